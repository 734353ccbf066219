package mailtext

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// normalizeNewlines turns CRLF and lone CR line endings into LF.
func normalizeNewlines(s string) string {
	if !strings.Contains(s, "\r") {
		return s
	}
	s = strings.ReplaceAll(s, "\r\n", "\n")
	return strings.ReplaceAll(s, "\r", "\n")
}

// cleanLines joins lines into text whose lines carry no trailing white space,
// whose runs of blank lines (or of lines that show nothing) are collapsed to
// one and which has no trailing white space and no leading blank lines. The
// first line loses its indentation unless the line below it is indented too,
// as in a block of code.
func cleanLines(lines []string) string {
	var b strings.Builder
	size := 0
	for _, l := range lines {
		size += len(l) + 1
	}
	b.Grow(size) // at most the lines and their newlines: one allocation
	started, blank := false, false
	for i, l := range lines {
		l = strings.TrimRightFunc(l, unicode.IsSpace)
		if l == "" || (strings.TrimSpace(l)[0] >= utf8.RuneSelf && isInvisibleLine(strings.TrimSpace(l))) {
			blank = started
			continue
		}
		if started {
			b.WriteByte('\n')
			if blank {
				b.WriteByte('\n')
			}
		} else if !indentedBlock(lines[i:]) {
			l = strings.TrimLeftFunc(l, unicode.IsSpace)
		}
		b.WriteString(l)
		started, blank = true, false
	}
	return b.String()
}

// indentedBlock reports whether the first two lines of lines are indented
// text.
func indentedBlock(lines []string) bool {
	if len(lines) < 2 {
		return false
	}
	for _, l := range lines[:2] {
		if strings.TrimSpace(l) == "" || !(strings.HasPrefix(l, " ") || strings.HasPrefix(l, "\t")) {
			return false
		}
	}
	return true
}

// cleanText is cleanLines for a whole text.
func cleanText(s string) string {
	return cleanLines(strings.Split(normalizeNewlines(s), "\n"))
}
