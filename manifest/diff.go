package manifest

import (
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"unicode"
)

// Difference is one field that differs between two manifests.
type Difference struct {
	// Section is the manifest section: "run", "code", "toolchain", "host",
	// "env", "config", "seeds", "data", "world" or "outcome".
	Section string
	// Field is the dotted path within the section, e.g. "optimizer.lr",
	// "modules[github.com/gomlx/gomlx].version", "files[shard-0.bin].sha256".
	// Map keys holding characters other than letters, digits, '_' and '-'
	// are bracketed; list elements are indexed, e.g. "layers[2]".
	Field string
	// A and B are the values in each manifest, "(absent)" where a manifest
	// lacks the field.
	A, B string
}

// Absent is the value a Difference shows for a field one manifest lacks.
const Absent = "(absent)"

// DiffOptions configures Diff.
type DiffOptions struct {
	// IncludeTimes includes the fields that differ between any two runs:
	// the run ID and the start and end times.
	IncludeTimes bool
}

// sectionRank orders the sections of a Diff as in Manifest.
func sectionRank(s string) int {
	switch s {
	case "run":
		return 0
	case "code":
		return 1
	case "toolchain":
		return 2
	case "host":
		return 3
	case "env":
		return 4
	case "config":
		return 5
	case "seeds":
		return 6
	case "data":
		return 7
	case "world":
		return 8
	case "outcome":
		return 9
	}
	return 10
}

// Diff lists the fields that differ between a and b, with default options.
func Diff(a, b *Manifest) []Difference { return DiffOptions{}.Diff(a, b) }

// Diff lists the fields that differ between a and b, ordered by section and
// then by field. Nested values (config, module versions, seeds, data files,
// host, metrics, ...) are flattened to one Difference per leaf. Config
// values under secret-looking keys are compared redacted, so a Diff never
// shows a secret. A nil manifest is treated as empty.
func (o DiffOptions) Diff(a, b *Manifest) []Difference {
	fa, fb := flattenManifest(a), flattenManifest(b)
	var out []Difference
	for k, va := range fa {
		vb, ok := fb[k]
		if !ok {
			vb = Absent
		}
		if va != vb {
			out = append(out, Difference{Section: k.section, Field: k.field, A: va, B: vb})
		}
	}
	for k, vb := range fb {
		if _, ok := fa[k]; !ok {
			out = append(out, Difference{Section: k.section, Field: k.field, A: Absent, B: vb})
		}
	}
	if !o.IncludeTimes {
		out = slices.DeleteFunc(out, func(d Difference) bool {
			return d.Section == "run" && d.Field == "run_id" ||
				d.Section == "outcome" && (d.Field == "start" || d.Field == "end")
		})
	}
	slices.SortFunc(out, func(x, y Difference) int {
		if c := cmp.Compare(sectionRank(x.Section), sectionRank(y.Section)); c != 0 {
			return c
		}
		if c := strings.Compare(x.Section, y.Section); c != 0 {
			return c
		}
		return naturalCompare(x.Field, y.Field)
	})
	return out
}

type leafKey struct{ section, field string }

// flattenManifest flattens m to its leaves, keyed by section and field.
func flattenManifest(m *Manifest) map[leafKey]string {
	out := make(map[leafKey]string)
	if m == nil {
		return out
	}
	c := *m
	c.Env = filterEnvMap(c.Env)
	if len(c.Config) > 0 {
		red, err := RedactJSON(c.Config)
		if err != nil {
			q, _ := json.Marshal("(invalid JSON: " + err.Error() + ")")
			red = q
		}
		c.Config = red
	}
	b, err := json.Marshal(&c)
	if err != nil {
		out[leafKey{"run", "(error)"}] = err.Error()
		return out
	}
	var tree map[string]any
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := dec.Decode(&tree); err != nil {
		out[leafKey{"run", "(error)"}] = err.Error()
		return out
	}
	// Key lists by identity so that an insertion does not shift every
	// later element.
	keyList(tree, "toolchain", "modules", "path")
	keyList(tree, "data", "files", "name")
	keyList(tree, "world", "ranks", "rank")
	keyList(tree, "code", "untracked", "path")

	for k, v := range tree {
		if obj, ok := v.(map[string]any); ok && k != "config" {
			for kk, vv := range obj {
				flatten(out, k, keyPath("", kk), vv)
			}
			if len(obj) == 0 {
				out[leafKey{k, ""}] = "{}"
			}
			continue
		}
		if k == "config" {
			flatten(out, k, "", v)
		} else {
			flatten(out, "run", k, v)
		}
	}
	return out
}

// keyList replaces the list tree[section][field] of objects by a map keyed by
// each object's id member (removed from the object).
func keyList(tree map[string]any, section, field, id string) {
	sec, ok := tree[section].(map[string]any)
	if !ok {
		return
	}
	list, ok := sec[field].([]any)
	if !ok {
		return
	}
	keyed := make(map[string]any, len(list))
	for i, e := range list {
		obj, ok := e.(map[string]any)
		if !ok {
			keyed[strconv.Itoa(i)] = e
			continue
		}
		k := leafString(obj[id])
		if _, dup := keyed[k]; dup || obj[id] == nil {
			k = fmt.Sprintf("%s#%d", k, i)
		}
		rest := make(map[string]any, len(obj))
		for kk, vv := range obj {
			if kk != id {
				rest[kk] = vv
			}
		}
		keyed[k] = rest
	}
	sec[field] = keyed
}

// flatten records the leaves of v under path in out.
func flatten(out map[leafKey]string, section, path string, v any) {
	switch t := v.(type) {
	case map[string]any:
		if len(t) == 0 {
			out[leafKey{section, path}] = "{}"
		}
		for k, vv := range t {
			flatten(out, section, keyPath(path, k), vv)
		}
	case []any:
		if len(t) == 0 {
			out[leafKey{section, path}] = "[]"
		}
		for i, vv := range t {
			flatten(out, section, path+"["+strconv.Itoa(i)+"]", vv)
		}
	default:
		out[leafKey{section, path}] = leafString(v)
	}
}

// keyPath appends key to a dotted path, bracketing keys that are not plain
// identifiers.
func keyPath(path, key string) string {
	plain := key != ""
	for _, r := range key {
		if !unicode.IsLetter(r) && !unicode.IsDigit(r) && r != '_' && r != '-' {
			plain = false
			break
		}
	}
	switch {
	case !plain:
		return path + "[" + key + "]"
	case path == "":
		return key
	}
	return path + "." + key
}

func leafString(v any) string {
	switch t := v.(type) {
	case nil:
		return "null"
	case string:
		return t
	case json.Number:
		return t.String()
	case bool:
		return strconv.FormatBool(t)
	}
	b, _ := json.Marshal(v)
	return string(b)
}

// naturalCompare orders strings with embedded numbers numerically, so that
// "layers[2]" sorts before "layers[10]".
func naturalCompare(a, b string) int {
	for a != "" && b != "" {
		da, db := digitPrefix(a), digitPrefix(b)
		if da > 0 && db > 0 {
			na := strings.TrimLeft(a[:da], "0")
			nb := strings.TrimLeft(b[:db], "0")
			if c := cmp.Compare(len(na), len(nb)); c != 0 {
				return c
			}
			if c := strings.Compare(na, nb); c != 0 {
				return c
			}
			a, b = a[da:], b[db:]
			continue
		}
		if a[0] != b[0] {
			return cmp.Compare(a[0], b[0])
		}
		a, b = a[1:], b[1:]
	}
	return cmp.Compare(len(a), len(b))
}

func digitPrefix(s string) int {
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	return i
}

// FormatDiff prints diffs as an aligned table with columns SECTION, FIELD, A
// and B, or "no differences" when diffs is empty. Values holding control
// characters are quoted.
func FormatDiff(w io.Writer, diffs []Difference) error {
	if len(diffs) == 0 {
		_, err := io.WriteString(w, "no differences\n")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SECTION\tFIELD\tA\tB")
	for _, d := range diffs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", cell(d.Section), cell(d.Field), cell(d.A), cell(d.B))
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("manifest: formatting diff: %w", err)
	}
	return nil
}

// cell makes s safe for one tabwriter cell.
func cell(s string) string {
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return strconv.Quote(s)
		}
	}
	if s == "" {
		return `""`
	}
	return s
}

// Compatible lists the reasons a replay of the recorded run in the current
// environment should be refused: the code revision differs (or is unknown),
// the uncommitted changes differ (diff hash, or untracked files left out of
// the diff), Go or a module version differs, or the data differs (dataset
// manifest, file hashes, first-epoch sample order). The
// caller fills current's Data before calling. An empty result means the
// replay may proceed.
func Compatible(recorded, current *Manifest) []string {
	if recorded == nil {
		return []string{"no recorded manifest"}
	}
	if current == nil {
		return []string{"no manifest for the current environment"}
	}
	var why []string
	add := func(format string, args ...any) { why = append(why, fmt.Sprintf(format, args...)) }

	// Code.
	rrev, crev := revision(&recorded.Code), revision(&current.Code)
	switch {
	case rrev == "":
		add("recorded run has no code revision (%s); the code cannot be verified", orDefault(recorded.Code.Note, "unknown"))
	case crev == "":
		add("current code has no revision (%s); recorded revision is %s", orDefault(current.Code.Note, "unknown"), rrev)
	case rrev != crev:
		add("code revision differs: recorded %s, current %s", describeRev(rrev, recorded.Code.Branch), describeRev(crev, current.Code.Branch))
	}
	switch rc, cc := &recorded.Code, &current.Code; {
	case rc.Dirty != cc.Dirty:
		add("uncommitted changes differ: recorded %s, current %s", dirtyState(rc), dirtyState(cc))
	case rc.Dirty && rc.DiffSHA256 != cc.DiffSHA256:
		add("uncommitted changes differ: recorded diff sha256 %s, current %s", orDefault(rc.DiffSHA256, Absent), orDefault(cc.DiffSHA256, Absent))
	}
	// Untracked files left out of the diff (binary, too large) are
	// compared by hash, or size where the content was not read.
	ru, cu := omittedUntracked(&recorded.Code), omittedUntracked(&current.Code)
	for _, p := range unionKeys(ru, cu) {
		r, rok := ru[p]
		c, cok := cu[p]
		switch {
		case !cok:
			add("untracked file %s (%s) was in the recorded checkout, not the current one", p, r)
		case !rok:
			add("untracked file %s (%s) is in the current checkout, not the recorded one", p, c)
		case r != c:
			add("untracked file %s differs: recorded %s, current %s", p, r, c)
		}
	}

	// Toolchain.
	if r, c := recorded.Toolchain.GoVersion, current.Toolchain.GoVersion; r != c {
		add("Go version differs: recorded %s, current %s", orDefault(r, Absent), orDefault(c, Absent))
	}
	rmods, cmods := moduleMap(recorded.Toolchain.Modules), moduleMap(current.Toolchain.Modules)
	for _, p := range unionKeys(rmods, cmods) {
		r, rok := rmods[p]
		c, cok := cmods[p]
		switch {
		case !cok:
			add("module %s %s is not linked into the current binary", p, r)
		case !rok:
			add("module %s %s is linked now but was not in the recorded run", p, c)
		case r != c:
			add("module %s differs: recorded %s, current %s", p, r, c)
		}
	}

	// Data.
	rd, cd := &recorded.Data, &current.Data
	if rd.ManifestSHA256 != cd.ManifestSHA256 {
		add("dataset manifest hash differs: recorded %s, current %s", orDefault(rd.ManifestSHA256, Absent), orDefault(cd.ManifestSHA256, Absent))
	}
	rfiles, cfiles := fileMap(rd.Files), fileMap(cd.Files)
	for _, n := range unionKeys(rfiles, cfiles) {
		r, rok := rfiles[n]
		c, cok := cfiles[n]
		switch {
		case !cok:
			add("data file %s is missing from the current data (recorded sha256 %s)", n, r.SHA256)
		case !rok:
			add("data file %s was not in the recorded run", n)
		case r.SHA256 != c.SHA256 || r.Size != c.Size:
			add("data file %s differs: recorded sha256 %s (%d bytes), current %s (%d bytes)", n, r.SHA256, r.Size, c.SHA256, c.Size)
		}
	}
	if rd.SampleOrderSHA256 != cd.SampleOrderSHA256 {
		add("first-epoch sample order differs: recorded %s, current %s", orDefault(rd.SampleOrderSHA256, Absent), orDefault(cd.SampleOrderSHA256, Absent))
	}
	return why
}

// revision is the git commit, or else the build-info VCS revision.
func revision(c *Code) string {
	if c.Commit != "" {
		return c.Commit
	}
	return c.VCSRevision
}

func describeRev(rev, branch string) string {
	if branch == "" {
		return rev
	}
	return rev + " (" + branch + ")"
}

func dirtyState(c *Code) string {
	if !c.Dirty {
		return "clean"
	}
	if c.DiffSHA256 == "" {
		return "dirty"
	}
	return "dirty, diff sha256 " + c.DiffSHA256
}

// omittedUntracked describes the untracked files whose content is not in the
// diff, except those left out as secrets, by path.
func omittedUntracked(c *Code) map[string]string {
	out := make(map[string]string)
	for _, u := range c.Untracked {
		switch {
		case u.Omitted == "" || u.Omitted == omittedSecret:
		case u.SHA256 != "":
			out[u.Path] = "sha256 " + u.SHA256
		default:
			out[u.Path] = fmt.Sprintf("%d bytes", u.Size)
		}
	}
	return out
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// moduleMap maps module paths to "version sum" (and replacement).
func moduleMap(mods []Module) map[string]string {
	out := make(map[string]string, len(mods))
	for _, m := range mods {
		out[m.Path] = moduleString(m)
	}
	return out
}

func moduleString(m Module) string {
	s := orDefault(m.Version, "(devel)")
	if m.Sum != "" {
		s += " " + m.Sum
	}
	if m.Replace != nil {
		s += " => " + m.Replace.Path + " " + moduleString(*m.Replace)
	}
	return s
}

func fileMap(files []DataFile) map[string]DataFile {
	out := make(map[string]DataFile, len(files))
	for _, f := range files {
		out[f.Name] = f
	}
	return out
}

func unionKeys[V any](a, b map[string]V) []string {
	keys := make([]string, 0, len(a)+len(b))
	for k := range a {
		keys = append(keys, k)
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	return keys
}
