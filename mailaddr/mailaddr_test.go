package mailaddr

import (
	"fmt"
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
