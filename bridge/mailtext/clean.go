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
// whose runs of blank lines are collapsed to one and which has neither leading
// nor trailing white space.
func cleanLines(lines []string) string {
	var b strings.Builder
	started, blank := false, false
	for _, l := range lines {
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
		} else {
			l = strings.TrimLeftFunc(l, unicode.IsSpace)
		}
		b.WriteString(l)
		started, blank = true, false
	}
	return b.String()
}

// cleanText is cleanLines for a whole text.
func cleanText(s string) string {
	return cleanLines(strings.Split(normalizeNewlines(s), "\n"))
}
