package mailtext

import "strings"

// DecodeFlowed decodes text/plain; format=flowed text (RFC 3676) into plain
// lines: soft line breaks (a line ending in a space) are joined, the stuffed
// space at the start of a line is removed, and lines are only joined with
// lines of the same quote depth. The signature delimiter "-- " is never
// joined with its neighbours. delSp is the DelSp parameter: when true, the
// space that marks a soft break is deleted instead of kept. Quoted paragraphs
// are written back with their depth as ">" marks followed by a space.
func DecodeFlowed(text string, delSp bool) string {
	text = normalizeNewlines(text)
	if text == "" {
		return ""
	}
	trailingNewline := strings.HasSuffix(text, "\n")
	text = strings.TrimSuffix(text, "\n")

	var out, para strings.Builder
	out.Grow(len(text))
	depth := 0
	open := false // para holds a paragraph whose last line was flowed

	flush := func() {
		if depth > 0 {
			out.WriteString(strings.Repeat(">", depth))
			if para.Len() > 0 {
				out.WriteByte(' ')
			}
		}
		out.WriteString(para.String())
		out.WriteByte('\n')
		para.Reset()
		open = false
	}

	for raw := range strings.SplitSeq(text, "\n") {
		d := 0
		for d < len(raw) && raw[d] == '>' {
			d++
		}
		content := strings.TrimPrefix(raw[d:], " ")
		sig := content == "-- "
		if open && (d != depth || sig) {
			flush() // a flowed line before a depth change or signature is fixed
		}
		depth = d
		flowed := !sig && strings.HasSuffix(content, " ")
		if flowed && delSp {
			content = content[:len(content)-1]
		}
		para.WriteString(content)
		if flowed {
			open = true
			continue
		}
		flush()
	}
	if open {
		flush()
	}
	s := out.String()
	if !trailingNewline {
		s = strings.TrimSuffix(s, "\n")
	}
	return s
}
