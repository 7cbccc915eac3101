package manifest

import (
	"encoding/json"
	"math"
	"testing"
)

func TestIsSecretKey(t *testing.T) {
	for _, tc := range []struct {
		key  string
		want bool
	}{
		{"api_key", true},
		{"apiKey", true},
		{"APIKey", true},
		{"access_key", true},
		{"aws-secret-access-key", true},
		{"client_secret", true},
		{"key", true},
		{"hf_token", true},
		{"AccessToken", true},
		{"password", true},
		{"db_passwd", true},
		{"Credentials", true},
		{"authorization", true},
		{"tokenizer", false},
		{"max_tokens", false},
		{"key_size", false},
		{"keyframe", false},
		{"monkey", false},
		{"learning_rate", false},
		{"", false},
	} {
		if got := IsSecretKey(tc.key); got != tc.want {
			t.Errorf("IsSecretKey(%q) = %v, want %v", tc.key, got, tc.want)
		}
	}
}

func TestRedactJSON(t *testing.T) {
	in := `{"z": 1.50, "api_key": "sk-fake-123", "nested": {"password": "hunter2", "list": [{"token": {"a": 1}}, 3]},
		"empty_key": "", "null_token": null, "max_tokens": 512, "html": "<a&b>", "big": 12345678901234567890}`
	got, err := RedactJSON([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	want := `{"z":1.50,"api_key":"[redacted]","nested":{"password":"[redacted]","list":[{"token":"[redacted]"},3]},"empty_key":"","null_token":null,"max_tokens":512,"html":"<a&b>","big":12345678901234567890}`
	if string(got) != want {
		t.Errorf("RedactJSON =\n%s\nwant\n%s", got, want)
	}
	for _, bad := range []string{``, `{"a":`, `{"a":1}}`, `{"a":1} 2`, `nope`} {
		if _, err := RedactJSON([]byte(bad)); err == nil {
			t.Errorf("RedactJSON(%q) succeeded", bad)
		}
	}
	if got, err := RedactJSON([]byte(`[1,"x",true,null]`)); err != nil || string(got) != `[1,"x",true,null]` {
		t.Errorf("RedactJSON(array) = %s, %v", got, err)
	}
}

func TestSetConfigRedacts(t *testing.T) {
	var m Manifest
	if err := m.SetConfig(struct {
		Token string  `json:"auth_token"`
		LR    float64 `json:"lr"`
	}{"tok", 0.1}); err != nil {
		t.Fatal(err)
	}
	if string(m.Config) != `{"auth_token":"[redacted]","lr":0.1}` {
		t.Errorf("Config = %s", m.Config)
	}
	if err := m.SetConfig(json.RawMessage(`{"lr":`)); err == nil {
		t.Error("SetConfig accepted invalid JSON")
	}
}

func TestSecretEnvValues(t *testing.T) {
	got := secretEnvValues([]string{
		"AWS_SECRET_ACCESS_KEY=AKIAFAKESECRET123",
		"SHORT_TOKEN=abc",
		"GOOGLE_APPLICATION_CREDENTIALS=/etc/gcp/key.json",
		"HOME=/root/secret-looking-but-not",
		"malformed",
	})
	if len(got) != 1 || got[0] != "AKIAFAKESECRET123" {
		t.Errorf("secretEnvValues = %q", got)
	}
}

func TestMetricsJSON(t *testing.T) {
	m := Metrics{"nan": math.NaN(), "pinf": math.Inf(1), "ninf": math.Inf(-1), "x": 0.1}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != `{"nan":"NaN","ninf":"-Inf","pinf":"+Inf","x":0.1}` {
		t.Errorf("Marshal = %s", b)
	}
	var got Metrics
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if !math.IsNaN(got["nan"]) || !math.IsInf(got["pinf"], 1) || !math.IsInf(got["ninf"], -1) || got["x"] != 0.1 {
		t.Errorf("Unmarshal = %v", got)
	}
	if err := json.Unmarshal([]byte(`{"a":"bogus"}`), &got); err == nil {
		t.Error("Unmarshal accepted a non-numeric string")
	}
}
