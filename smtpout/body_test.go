package smtpout

import "testing"

// FuzzNormalizeBody checks that the fast path for clean text never
// changes what normalizeBody returns.
func FuzzNormalizeBody(f *testing.F) {
	for _, s := range []string{"", "Hello\n\tthere", "Grüße 🙂", "a\r\nb", "a\x00b\x7f", "a\xffb\xc3", "a\u0085b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := normalizeBody(s), rewriteBody(s); got != want {
			t.Fatalf("normalizeBody(%q) = %q, the general path gives %q", s, got, want)
		}
	})
}

// TestNormalizeBody checks normalizeBody against its definition (the
// general path alone), on text its fast path returns unchanged and on
// text it must rewrite.
func TestNormalizeBody(t *testing.T) {
	slow := rewriteBody
	tests := []struct {
		name, in, want string
		clean          bool
	}{
		{name: "empty", in: "", want: "", clean: true},
		{name: "ascii lines and tabs", in: "Hello\n\tthere\n", want: "Hello\n\tthere\n", clean: true},
		{name: "utf-8", in: "Grüße – 日本 🙂", want: "Grüße – 日本 🙂", clean: true},
		{name: "C1 control kept", in: "a\u0085b", want: "a\u0085b", clean: true},
		{name: "CRLF", in: "a\r\nb\rc", want: "a\nb\nc"},
		{name: "control characters", in: "a\x00b\x1bc\x7fd", want: "abcd"},
		{name: "invalid utf-8", in: "a\xffb\xc3", want: "a\uFFFDb\uFFFD"},
		{name: "invalid utf-8 then CR", in: "\xe2\x82\r\n", want: "\uFFFD\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := cleanBody(tt.in); got != tt.clean {
				t.Errorf("cleanBody(%q) = %v, want %v", tt.in, got, tt.clean)
			}
			got := normalizeBody(tt.in)
			if got != tt.want {
				t.Errorf("normalizeBody(%q) = %q, want %q", tt.in, got, tt.want)
			}
			if ref := slow(tt.in); got != ref {
				t.Errorf("normalizeBody(%q) = %q, the general path gives %q", tt.in, got, ref)
			}
		})
	}
}
