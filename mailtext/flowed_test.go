package mailtext

import "testing"

func TestDecodeFlowed(t *testing.T) {
	tests := []struct {
		name  string
		in    string
		delSp bool
		want  string
	}{
		{"fixed lines stay", "one\ntwo\n", false, "one\ntwo\n"},
		{"soft break joined", "Hello \nworld\n", false, "Hello world\n"},
		{"paragraph of three lines", "This is a \nlong para\ngraph \nsecond\n", false, "This is a long para\ngraph second\n"},
		{"delsp deletes the space", "Hel\nlo wor \nld\n", true, "Hel\nlo world\n"},
		{"delsp without soft breaks", "abc\n", true, "abc\n"},
		{"crlf input", "Hello \r\nworld\r\n", false, "Hello world\n"},
		{"space stuffing removed", " From here\n >not a quote\n", false, "From here\n>not a quote\n"},
		{"quoted paragraph", "> quoted \n> text\nreply\n", false, "> quoted text\nreply\n"},
		{"nested quote", ">> deep \n>> er\n", false, ">> deep er\n"},
		{"depth change ends paragraph", "> quoted \nreply\n", false, "> quoted \nreply\n"},
		{"depth change with delsp", "> quoted \nreply\n", true, "> quoted\nreply\n"},
		{"signature never joined", "Bye \n-- \nJane\n", false, "Bye \n-- \nJane\n"},
		{"signature line not flowed", "text\n-- \nJane \nDoe\n", false, "text\n-- \nJane Doe\n"},
		{"quoted signature", "> a\n> -- \n> sig\n", false, "> a\n> -- \n> sig\n"},
		{"empty quoted line", ">\n> x\n", false, ">\n> x\n"},
		{"flowed last line", "end \n", false, "end \n"},
		{"no trailing newline", "a \nb", false, "a b"},
		{"empty", "", false, ""},
		{"blank lines kept", "a\n\nb\n", false, "a\n\nb\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := DecodeFlowed(tc.in, tc.delSp); got != tc.want {
				t.Errorf("DecodeFlowed(%q, %v) = %q, want %q", tc.in, tc.delSp, got, tc.want)
			}
		})
	}
}
