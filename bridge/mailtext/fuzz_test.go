package mailtext

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func FuzzTrim(f *testing.F) {
	for _, tc := range trimCases {
		f.Add(tc.in)
	}
	f.Add("-- \n")
	f.Add("On Tue, 3 Mar 2026 at 10:15, <\n> wrote:\n>")
	f.Add("From: a@b\nSent: x\n\n\nTo: y\nSubject: z")
	f.Fuzz(func(t *testing.T, in string) {
		got := Trim(in)
		norm := strings.TrimPrefix(normalizeNewlines(in), "\ufeff")
		if strings.TrimSpace(norm) != "" && strings.TrimSpace(got.Text) == "" {
			t.Fatalf("Trim(%q) left nothing", in)
		}
		if strings.Contains(got.Text, "\r") {
			t.Fatalf("Trim(%q).Text contains CR: %q", in, got.Text)
		}
		if !got.Trimmed && (got.Quote != "" || got.Signature != "") {
			t.Fatalf("Trim(%q): untrimmed result with quote %q, signature %q", in, got.Quote, got.Signature)
		}
		inputLines := make(map[string]bool)
		for l := range strings.SplitSeq(norm, "\n") {
			inputLines[strings.TrimSpace(l)] = true
		}
		for l := range strings.SplitSeq(got.Text, "\n") {
			// Blank lines may separate the answers of an interleaved reply.
			if l != "" && !inputLines[strings.TrimSpace(l)] {
				t.Fatalf("Trim(%q).Text has line %q that is not in the input", in, l)
			}
		}
	})
}

func FuzzDecodeFlowed(f *testing.F) {
	f.Add("Hello \nworld\n", false)
	f.Add("> a \n>> b \n-- \nsig \n", true)
	f.Add(" stuffed \r\n", true)
	f.Fuzz(func(t *testing.T, in string, delSp bool) {
		got := DecodeFlowed(in, delSp)
		norm := normalizeNewlines(in)
		if strings.Count(got, "\n") > strings.Count(norm, "\n") {
			t.Fatalf("DecodeFlowed(%q) = %q has more lines than its input", in, got)
		}
		plain := true
		for l := range strings.SplitSeq(norm, "\n") {
			if strings.HasSuffix(l, " ") || strings.HasPrefix(l, " ") || strings.HasPrefix(l, ">") {
				plain = false
				break
			}
		}
		if plain && got != norm {
			t.Fatalf("DecodeFlowed(%q) = %q, want the input unchanged", in, got)
		}
		if utf8.ValidString(in) && !utf8.ValidString(got) {
			t.Fatalf("DecodeFlowed(%q) = %q is not valid UTF-8", in, got)
		}
	})
}

func FuzzHTMLToText(f *testing.F) {
	f.Add("<p>Hello <b>Jane</b>,</p><table><tr><td>a</td></tr></table>")
	f.Add(`<div class="gmail_quote">x</div><blockquote type="cite">y</blockquote>`)
	f.Add(`<div>a</div><hr><div id="divRplyFwdMsg"><b>From:</b> x</div><div>b</div>`)
	f.Add("<pre>  code\n  more</pre><blockquote><blockquote>deep</blockquote></blockquote>")
	f.Fuzz(func(t *testing.T, in string) {
		for _, trimmed := range []bool{false, true} {
			var got string
			var err error
			if trimmed {
				got, _, err = HTMLToTextTrimmed(in)
			} else {
				got, err = HTMLToText(in)
			}
			if err != nil {
				t.Fatalf("convert %q: %v", in, err)
			}
			if strings.Contains(got, "\n\n\n") || strings.Contains(got, " \n") || strings.Contains(got, "\r") {
				t.Fatalf("convert %q = %q is not cleaned", in, got)
			}
		}
	})
}
