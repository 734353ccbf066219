package mailaddr

import (
	"fmt"
	"net/mail"
	"strings"
	"testing"
)

func TestKey(t *testing.T) {
	tests := []struct{ in, want string }{
		{"Jane@Example.COM", "jane@example.com"},
		{"  jane@example.com\t", "jane@example.com"},
		{"\u212Aate@example.com", "\u212Aate@example.com"}, // Kelvin sign stays
		{"\u0130rem@example.com", "\u0130rem@example.com"}, // dotted capital I stays
		{"JÖRG@example.de", "jÖrg@example.de"},             // only ASCII folds
		{"", ""},
	}
	for _, tt := range tests {
		if got := Key(tt.in); got != tt.want {
			t.Errorf("Key(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
	if Key("\u212Aate@example.com") == Key("kate@example.com") {
		t.Error("the Kelvin-sign address folds into kate@example.com")
	}
}

func ExampleKey() {
	fmt.Println(Key(" Kate@Example.com"))
	fmt.Println(Key("\u212Aate@Example.com") == "kate@example.com")
	// Output:
	// kate@example.com
	// false
}

// maxCopies is the cap the tests use (inbound.MaxCc in the daemon).
const maxCopies = 10

func TestCopies(t *testing.T) {
	own := []string{"support@example.com", "Help@Example.com"}
	many := make([]*mail.Address, maxCopies+3)
	for i := range many {
		many[i] = &mail.Address{Address: fmt.Sprintf("p%d@example.org", i)}
	}
	tests := []struct {
		name    string
		cc      []*mail.Address
		want    []string
		dropped int
	}{
		{name: "none"},
		{name: "two colleagues", cc: []*mail.Address{{Name: "Bob", Address: "bob@example.org"}, {Address: "carol@example.net"}},
			want: []string{"bob@example.org", "carol@example.net"}},
		{name: "own addresses left out, case-insensitively",
			cc:   []*mail.Address{{Address: "SUPPORT@example.com"}, {Address: "bob@example.org"}, {Address: "help@EXAMPLE.COM"}},
			want: []string{"bob@example.org"}},
		{name: "the contact and repeats left out",
			cc:   []*mail.Address{{Address: "Jane@Example.test"}, {Address: "bob@example.org"}, {Address: "BOB@example.org"}},
			want: []string{"bob@example.org"}},
		{name: "unusable addresses left out",
			cc:   []*mail.Address{nil, {Address: ""}, {Address: "no-at-sign"}, {Address: "a\r\nBcc: x@evil.example"}, {Address: strings.Repeat("a", 250) + "@example.org"}, {Address: "ok@example.org"}},
			want: []string{"ok@example.org"}},
		{name: "capped", cc: many, want: func() []string {
			var w []string
			for _, a := range many[:maxCopies] {
				w = append(w, a.Address)
			}
			return w
		}(), dropped: 3},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, dropped := Copies(tc.cc, append([]string{"jane@example.test"}, own...), maxCopies)
			if strings.Join(got, ",") != strings.Join(tc.want, ",") || dropped != tc.dropped {
				t.Errorf("Copies = %q, %d; want %q, %d", got, dropped, tc.want, tc.dropped)
			}
		})
	}
}
