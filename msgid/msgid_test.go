package msgid

import (
	"strings"
	"testing"
)

func TestGenerator(t *testing.T) {
	g, err := NewGenerator([]byte("0123456789abcdef0123456789abcdef"), "Example.COM")
	if err != nil {
		t.Fatal(err)
	}
	other, err := NewGenerator([]byte("another key, just as long as it is"), "example.com")
	if err != nil {
		t.Fatal(err)
	}
	id := g.New()
	if !strings.HasSuffix(id, "@example.com") {
		t.Errorf("id %q: want domain example.com", id)
	}
	if id == g.New() {
		t.Errorf("two calls returned the same id %q", id)
	}
	tests := []struct {
		id   string
		want bool
	}{
		{id, true},
		{"<" + id + ">", true},
		{strings.ToUpper(id), true},
		{strings.Replace(id, "@example.com", "@other.example", 1), true},
		{other.New(), false},
		{"", false},
		{"abc@example.com", false},
		{"a.b@example.com", false},
		{strings.Replace(id, ".", "x.", 1), false},
		{flipLast(id), false},
	}
	for _, tt := range tests {
		if got := g.IsOwn(tt.id); got != tt.want {
			t.Errorf("IsOwn(%q) = %v, want %v", tt.id, got, tt.want)
		}
	}
}

func flipLast(id string) string {
	at := strings.IndexByte(id, '@')
	b := []byte(id)
	if b[at-1] == 'a' {
		b[at-1] = 'b'
	} else {
		b[at-1] = 'a'
	}
	return string(b)
}

func TestNewGeneratorErrors(t *testing.T) {
	if _, err := NewGenerator([]byte("short"), "example.com"); err == nil {
		t.Error("short key accepted")
	}
	if _, err := NewGenerator([]byte("0123456789abcdef"), "bad domain"); err == nil {
		t.Error("bad domain accepted")
	}
}

func FuzzIsOwn(f *testing.F) {
	g, _ := NewGenerator([]byte("0123456789abcdef0123456789abcdef"), "example.com")
	f.Add(g.New())
	f.Add("<a.b@c>")
	f.Fuzz(func(t *testing.T, id string) {
		g.IsOwn(id)
	})
}
