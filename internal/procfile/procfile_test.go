package procfile

import "testing"

func TestField(t *testing.T) {
	intel := []byte("processor\t: 0\nvendor_id\t: GenuineIntel\ncpu family\t: 6\nmodel name\t: Intel(R) Xeon(R) Processor\n")
	amd := []byte("processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC\n")
	arm := []byte("processor\t: 0\nBogoMIPS\t: 50.00\nFeatures\t: fp asimd\n")
	mem := []byte("MemTotal:       24684100 kB\nMemFree:         1234 kB\n")
	for _, c := range []struct {
		in        []byte
		key, want string
	}{
		{intel, "vendor_id", "GenuineIntel"}, {intel, "model name", "Intel(R) Xeon(R) Processor"},
		{amd, "vendor_id", "AuthenticAMD"}, {arm, "vendor_id", ""}, {nil, "vendor_id", ""},
		{mem, "MemTotal", "24684100 kB"}, {mem, "Mem", ""},
	} {
		if got := Field(c.in, c.key); got != c.want {
			t.Errorf("Field(%q, %q) = %q, want %q", c.in, c.key, got, c.want)
		}
	}
}
