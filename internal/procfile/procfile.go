// Package procfile reads the "key : value" lines of Linux /proc files such
// as /proc/cpuinfo and /proc/meminfo.
package procfile

import (
	"bufio"
	"bytes"
	"strings"
)

// Field returns the value of the first "key : value" line of b whose key,
// trimmed, is key; "" if there is none.
func Field(b []byte, key string) string {
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == key {
			return strings.TrimSpace(v)
		}
	}
	return ""
}
