package manifest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode"
)

// Redacted replaces secret values in everything this package writes.
const Redacted = "[redacted]"

// RedactJSON returns a copy of the JSON document raw in which the value of
// every object member whose key looks like a secret (see IsSecretKey) is
// replaced by the string "[redacted]", at any depth. A secret-looking key's
// whole value is replaced even when it is an object or array; null and empty
// string values are kept since they hide nothing. Member order and numbers
// are preserved exactly; whitespace is not.
func RedactJSON(raw []byte) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var buf bytes.Buffer
	if err := redactValue(dec, &buf); err != nil {
		return nil, fmt.Errorf("redacting JSON: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("redacting JSON: data after the top-level value")
	}
	return buf.Bytes(), nil
}

// redactValue copies one JSON value from dec to buf, redacting members with
// secret-looking keys.
func redactValue(dec *json.Decoder, buf *bytes.Buffer) error {
	tok, err := dec.Token()
	if err != nil {
		if err == io.EOF {
			return io.ErrUnexpectedEOF
		}
		return err
	}
	switch t := tok.(type) {
	case json.Delim:
		switch t {
		case '{':
			buf.WriteByte('{')
			for first := true; dec.More(); first = false {
				if !first {
					buf.WriteByte(',')
				}
				ktok, err := dec.Token()
				if err != nil {
					return err
				}
				key, ok := ktok.(string)
				if !ok {
					return fmt.Errorf("object key is %T", ktok)
				}
				writeJSONString(buf, key)
				buf.WriteByte(':')
				if !IsSecretKey(key) {
					if err := redactValue(dec, buf); err != nil {
						return err
					}
					continue
				}
				var v json.RawMessage
				if err := dec.Decode(&v); err != nil {
					return err
				}
				if t := bytes.TrimSpace(v); string(t) == "null" || string(t) == `""` {
					buf.Write(t)
				} else {
					writeJSONString(buf, Redacted)
				}
			}
			if _, err := dec.Token(); err != nil { // '}'
				return err
			}
			buf.WriteByte('}')
		case '[':
			buf.WriteByte('[')
			for first := true; dec.More(); first = false {
				if !first {
					buf.WriteByte(',')
				}
				if err := redactValue(dec, buf); err != nil {
					return err
				}
			}
			if _, err := dec.Token(); err != nil { // ']'
				return err
			}
			buf.WriteByte(']')
		default:
			return fmt.Errorf("unexpected %v", t)
		}
	case string:
		writeJSONString(buf, t)
	case json.Number:
		buf.WriteString(t.String())
	case bool:
		if t {
			buf.WriteString("true")
		} else {
			buf.WriteString("false")
		}
	case nil:
		buf.WriteString("null")
	default:
		return fmt.Errorf("unexpected token %T", tok)
	}
	return nil
}

func writeJSONString(buf *bytes.Buffer, s string) {
	enc := json.NewEncoder(buf)
	enc.SetEscapeHTML(false)
	enc.Encode(s)               // cannot fail for a string
	buf.Truncate(buf.Len() - 1) // Encode appends a newline
}

// IsSecretKey reports whether a config key names a secret. The key is split
// into lower-case words at '_', '-', '.', spaces and camelCase boundaries;
// it is a secret when a word contains "secret", "password", "passwd" or
// "passphrase", starts with "credential" or "authorization", or when the
// last word is "key", "token", "apikey", "accesskey", "privatekey",
// "authtoken" or "accesstoken" ("api_key", "accessKey", "hf_token", "key").
// Words like "tokenizer", "max_tokens", "keyframe" and "key_size" are not
// secrets.
func IsSecretKey(name string) bool {
	words := splitWords(name)
	if len(words) == 0 {
		return false
	}
	for _, w := range words {
		switch {
		case strings.Contains(w, "secret"),
			strings.Contains(w, "password"),
			strings.Contains(w, "passwd"),
			strings.Contains(w, "passphrase"),
			strings.HasPrefix(w, "credential"),
			strings.HasPrefix(w, "authorization"):
			return true
		}
	}
	switch words[len(words)-1] {
	case "key", "token", "apikey", "accesskey", "privatekey", "authtoken", "accesstoken":
		return true
	}
	return false
}

// splitWords splits an identifier into lower-case words at non-alphanumeric
// runes and lower-to-upper camelCase boundaries ("APIKey" is one word,
// "apiKey" two).
func splitWords(s string) []string {
	var words []string
	var cur []rune
	flush := func() {
		if len(cur) > 0 {
			words = append(words, strings.ToLower(string(cur)))
			cur = cur[:0]
		}
	}
	var prev rune
	for _, r := range s {
		switch {
		case !unicode.IsLetter(r) && !unicode.IsDigit(r):
			flush()
		case unicode.IsUpper(r) && (unicode.IsLower(prev) || unicode.IsDigit(prev)):
			flush()
			cur = append(cur, r)
		default:
			cur = append(cur, r)
		}
		prev = r
	}
	flush()
	return words
}

// isSecretEnvName reports whether an environment variable name looks like it
// holds a secret: it contains SECRET, TOKEN, KEY, PASSWORD or CREDENTIAL in
// any case. Such variables are never recorded, even when allow-listed.
func isSecretEnvName(name string) bool {
	u := strings.ToUpper(name)
	for _, w := range []string{"SECRET", "TOKEN", "KEY", "PASSWORD", "PASSWD", "CREDENTIAL"} {
		if strings.Contains(u, w) {
			return true
		}
	}
	return false
}

// minSecretLen is the shortest environment value scrubbed from written files;
// shorter values ("1", "true") would match innocent text.
const minSecretLen = 8

// secretEnvValues returns the values of the secret-looking variables in env
// ("NAME=value" pairs) that are worth scrubbing from written files: at least
// minSecretLen bytes and not a file path (a path to a key file is not
// itself the secret, and scrubbing it would mangle unrelated paths).
func secretEnvValues(env []string) []string {
	var vals []string
	for _, kv := range env {
		name, val, ok := strings.Cut(kv, "=")
		if !ok || !isSecretEnvName(name) || len(val) < minSecretLen {
			continue
		}
		if strings.HasPrefix(val, "/") || strings.HasPrefix(val, "~") {
			continue
		}
		vals = append(vals, val)
	}
	return vals
}
