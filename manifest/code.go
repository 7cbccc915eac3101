package manifest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
)

// Caps on the untracked files copied into code.diff.
const (
	// maxUntrackedFileBytes is the largest untracked file whose content
	// goes into the diff.
	maxUntrackedFileBytes = 1 << 20
	// maxUntrackedTotalBytes caps the untracked content in the diff.
	maxUntrackedTotalBytes = 16 << 20
	// maxUntrackedListed caps Code.Untracked; the rest are only counted.
	maxUntrackedListed = 1000
	// omittedSecret is UntrackedFile.Omitted for files whose name
	// suggests secrets.
	omittedSecret = "name suggests it holds secrets"
)

// git runs git with args in dir and returns its standard output. Optional
// locks are disabled so that collecting never writes to the repository
// (other processes may be using the checkout), and messages are in English.
func git(ctx context.Context, dir string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, "git", append([]string{"-C", dir}, args...)...)
	cmd.Env = append(os.Environ(), "GIT_OPTIONAL_LOCKS=0", "LC_ALL=C", "GIT_TERMINAL_PROMPT=0")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("git %s: %w", strings.Join(args, " "), ctx.Err())
		}
		msg := strings.TrimSpace(stderr.String())
		if msg == "" {
			return nil, fmt.Errorf("git %s: %w", strings.Join(args, " "), err)
		}
		return nil, fmt.Errorf("git %s: %w: %s", strings.Join(args, " "), err, msg)
	}
	return stdout.Bytes(), nil
}

// collectGit fills the git fields of c (Root, Commit, Branch, Dirty, diff,
// Untracked) for the checkout containing dir, and returns the diff content.
// When dir is not in a usable git checkout, or git is not installed, it sets
// c.Note and returns no error; once the checkout is found, failures to read
// its state are errors, since a manifest that silently claims "clean" would
// be wrong.
func collectGit(ctx context.Context, dir string, c *Code, secrets []string) ([]byte, error) {
	if _, err := exec.LookPath("git"); err != nil {
		c.Note = "not a git checkout: git is not installed"
		return nil, nil
	}
	out, err := git(ctx, dir, "rev-parse", "--show-toplevel")
	if err != nil {
		if ctx.Err() != nil {
			return nil, err
		}
		if strings.Contains(err.Error(), "not a git repository") {
			c.Note = "not a git checkout"
		} else {
			c.Note = "not a git checkout: " + err.Error()
		}
		return nil, nil
	}
	root := strings.TrimSpace(string(out))
	c.Root = root

	out, err = git(ctx, root, "rev-parse", "--verify", "-q", "HEAD")
	if err != nil {
		if ctx.Err() != nil {
			return nil, err
		}
		c.Note = "git checkout has no commits yet"
	} else {
		c.Commit = strings.TrimSpace(string(out))
	}
	if out, err := git(ctx, root, "symbolic-ref", "-q", "--short", "HEAD"); err == nil {
		c.Branch = strings.TrimSpace(string(out))
	} else if ctx.Err() != nil {
		return nil, err
	} else {
		c.Branch = "(detached)"
	}

	var diff []byte
	if c.Commit != "" {
		diff, err = git(ctx, root, "diff", "--no-color", "--no-ext-diff", "--no-textconv", "--binary", "HEAD", "--")
		if err != nil {
			return nil, err
		}
	}
	out, err = git(ctx, root, "ls-files", "-z", "--others", "--exclude-standard")
	if err != nil {
		return nil, err
	}
	var untracked []string
	for _, p := range bytes.Split(out, []byte{0}) {
		if len(p) > 0 {
			untracked = append(untracked, string(p))
		}
	}
	var buf bytes.Buffer
	buf.Write(diff)
	total := 0
	for i, p := range untracked {
		if i >= maxUntrackedListed {
			c.UntrackedNotListed = len(untracked) - maxUntrackedListed
			break
		}
		uf, err := untrackedPatch(&buf, root, p, &total)
		if err != nil {
			return nil, err
		}
		c.Untracked = append(c.Untracked, uf)
	}
	if buf.Len() == 0 && len(untracked) == 0 {
		return nil, nil
	}
	c.Dirty = true
	if buf.Len() == 0 {
		return nil, nil // only omitted untracked files
	}
	d := scrubValues(buf.Bytes(), secrets)
	c.DiffFile = DiffFileName
	c.DiffSHA256 = sha256Hex(d)
	c.DiffBytes = int64(len(d))
	return d, nil
}

// untrackedPatch appends the untracked file root/rel to buf as a git
// new-file patch, unless it is too large, binary or looks like it holds
// secrets, and describes it.
func untrackedPatch(buf *bytes.Buffer, root, rel string, total *int) (UntrackedFile, error) {
	uf := UntrackedFile{Path: rel}
	full := filepath.Join(root, filepath.FromSlash(rel))
	fi, err := os.Lstat(full)
	if err != nil {
		return uf, fmt.Errorf("untracked file: %w", err)
	}
	uf.Size = fi.Size()
	switch {
	case secretFileName(rel):
		uf.Omitted = omittedSecret
		return uf, nil
	case fi.Mode()&os.ModeSymlink != 0:
		target, err := os.Readlink(full)
		if err != nil {
			return uf, fmt.Errorf("untracked file: %w", err)
		}
		uf.SHA256 = sha256Hex([]byte(target))
		writePatch(buf, rel, "120000", []byte(target))
		return uf, nil
	case !fi.Mode().IsRegular():
		uf.Omitted = "not a regular file"
		return uf, nil
	case fi.Size() > maxUntrackedFileBytes:
		uf.Omitted = fmt.Sprintf("larger than %d bytes", maxUntrackedFileBytes)
		return uf, nil
	}
	f, err := os.Open(full)
	if err != nil {
		return uf, fmt.Errorf("untracked file: %w", err)
	}
	content, err := io.ReadAll(io.LimitReader(f, maxUntrackedFileBytes+1))
	f.Close()
	if err != nil {
		return uf, fmt.Errorf("untracked file %s: %w", full, err)
	}
	uf.Size = int64(len(content))
	uf.SHA256 = sha256Hex(content)
	switch {
	case len(content) > maxUntrackedFileBytes:
		uf.Omitted = fmt.Sprintf("larger than %d bytes", maxUntrackedFileBytes)
	case bytes.IndexByte(content[:min(len(content), 8000)], 0) >= 0:
		uf.Omitted = "binary"
	case *total+len(content) > maxUntrackedTotalBytes:
		uf.Omitted = fmt.Sprintf("untracked content over the %d-byte cap", maxUntrackedTotalBytes)
	default:
		*total += len(content)
		mode := "100644"
		if fi.Mode()&0o111 != 0 {
			mode = "100755"
		}
		writePatch(buf, rel, mode, content)
	}
	return uf, nil
}

// writePatch writes a git-apply-compatible patch creating rel with content.
func writePatch(buf *bytes.Buffer, rel, mode string, content []byte) {
	a, b := quotePath("a/"+rel), quotePath("b/"+rel)
	fmt.Fprintf(buf, "diff --git %s %s\nnew file mode %s\n", a, b, mode)
	if len(content) == 0 {
		return
	}
	lines := bytes.SplitAfter(content, []byte{'\n'})
	if len(lines[len(lines)-1]) == 0 {
		lines = lines[:len(lines)-1]
	}
	fmt.Fprintf(buf, "--- /dev/null\n+++ %s\n@@ -0,0 +1", b)
	if len(lines) != 1 {
		fmt.Fprintf(buf, ",%d", len(lines))
	}
	buf.WriteString(" @@\n")
	for _, l := range lines {
		buf.WriteByte('+')
		buf.Write(l)
	}
	if content[len(content)-1] != '\n' {
		buf.WriteString("\n\\ No newline at end of file\n")
	}
}

// quotePath quotes a patch path the way git does when it holds a quote,
// backslash, control or non-ASCII byte.
func quotePath(p string) string {
	needs := false
	for i := 0; i < len(p); i++ {
		if c := p[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' {
			needs = true
			break
		}
	}
	if !needs {
		return p
	}
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(p); i++ {
		switch c := p[i]; c {
		case '"', '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case '\n':
			b.WriteString(`\n`)
		case '\t':
			b.WriteString(`\t`)
		default:
			if c < 0x20 || c >= 0x7f {
				fmt.Fprintf(&b, "\\%03o", c)
			} else {
				b.WriteByte(c)
			}
		}
	}
	b.WriteByte('"')
	return b.String()
}

// secretFileName reports whether an untracked file's name suggests it holds
// credentials, so its content must not be copied into the run directory.
func secretFileName(rel string) bool {
	base := strings.ToLower(path.Base(rel))
	switch base {
	case ".env", ".netrc", ".npmrc", ".pypirc", ".git-credentials", "id_rsa", "id_dsa", "id_ecdsa", "id_ed25519":
		return true
	}
	if strings.HasPrefix(base, ".env.") {
		return true
	}
	switch path.Ext(base) {
	case ".pem", ".key", ".p12", ".pfx", ".jks", ".keystore":
		return true
	}
	// Source files named like secrets (key.go, token.py) are code, not
	// secrets; data and config files named so are treated as secrets.
	switch path.Ext(base) {
	case "", ".txt", ".json", ".yaml", ".yml", ".toml", ".ini", ".cfg", ".conf":
		stem := strings.TrimSuffix(base, path.Ext(base))
		return IsSecretKey(stem) || strings.Contains(stem, "credential")
	}
	return false
}
