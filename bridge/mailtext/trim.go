package mailtext

import (
	"strings"
	"unicode/utf8"
)

// Result is what Trim made of a message body.
type Result struct {
	// Text is the new part of the message: what the sender wrote, without
	// quoted history and signature, cleaned of trailing white space and
	// repeated blank lines. It is never empty when the input has text.
	Text string
	// Trimmed reports whether quoted history or a signature was removed.
	Trimmed bool
	// Quote is the removed quoted history, cleaned; it may be empty.
	Quote string
	// Signature is the removed signature without its "-- " delimiter,
	// cleaned; it may be empty.
	Signature string
}

// Trim cuts the quoted history and the signature off the plain-text body of a
// reply and returns the new part.
//
// Quoted history starts at an attribution line ("On <date>, <name> wrote:"
// and its translations, also wrapped over up to three lines), an Outlook-style
// header block (From/Sent/To/Subject in many languages, with or without a
// "____" rule above it), an "-----Original Message-----" or forwarded-message
// separator, or a help desk's "reply above this line" marker; everything from
// there on is removed. Blocks of '>'-quoted lines, with the attribution line
// that introduces them, are removed wherever they are, so the answers of an
// interleaved reply are kept. The signature starts at a "-- " line (or a "--"
// line followed by a few short lines); a closing "Sent from my iPhone"-style
// line is removed too.
//
// If trimming would leave nothing, as for a message that is only a forward,
// Trim returns the whole text, cleaned, with Trimmed false.
func Trim(text string) Result {
	text = strings.TrimPrefix(normalizeNewlines(text), "\ufeff")
	lines := splitLines(text)

	s := scanner{lines: lines, kept: make([]string, 0, len(lines))}
	if cut := s.scan(); cut >= 0 {
		s.cutAt(cut)
	}
	body, sig, rest := splitSignature(s.kept)
	quote := s.quote
	if strings.TrimSpace(strings.Join(rest, "")) != "" {
		q := make([]string, 0, len(rest)+1+len(quote))
		q = append(append(q, rest...), "")
		quote = append(q, quote...)
	}
	res := Result{
		Text:      cleanLines(body),
		Trimmed:   len(quote) > 0 || len(body) < len(s.kept),
		Quote:     cleanLines(quote),
		Signature: cleanLines(sig),
	}
	if res.Text == "" {
		return Result{Text: cleanLines(rawLines(lines))}
	}
	return res
}

// scanner sorts the lines of a message into kept text and quoted history.
type scanner struct {
	lines      []line
	kept       []string // the lines kept, with blank lines where quotes were
	quote      []string // the lines removed as quoted history
	gap        bool     // a quote was removed since the last kept text
	hasText    bool     // a non-blank line was kept
	quoteSeen  bool     // a '>' block was removed as a quote
	promptSeen bool     // a '>' block was kept as command prompts
}

// keep keeps l as text of the new message.
func (s *scanner) keep(l line) {
	if !l.blank() {
		if s.gap && s.hasText {
			s.kept = append(s.kept, "") // separates interleaved answers
		}
		s.gap, s.hasText = false, true
	}
	s.kept = append(s.kept, l.raw)
}

// drop removes ls as quoted history.
func (s *scanner) drop(ls []line) {
	if len(s.quote) > 0 && !s.gap {
		s.quote = append(s.quote, "")
	}
	for _, l := range ls {
		s.quote = append(s.quote, l.raw)
	}
	s.gap = true
}

// scan keeps and drops lines up to the start of the quoted history, whose
// index it returns, or -1 if there is none.
func (s *scanner) scan() int {
	lines := s.lines
	for i := 0; i < len(lines); i++ {
		l := lines[i]
		if l.blank() {
			s.keep(l)
			continue
		}
		if l.quoted {
			i = s.quoteBlock(i) - 1
			continue
		}

		if n, strong := attributionAt(lines, i); n > 0 {
			if j := nextNonBlank(lines, i+n); j < len(lines) && lines[j].quoted {
				s.drop(lines[i:j]) // the quote block follows
				s.quoteSeen = true
				i = j - 1
				continue
			}
			if strong {
				return i
			}
		} else if j := nextNonBlank(lines, i+1); j < len(lines) && lines[j].quoted && looseAttribution(l.trim) {
			s.drop(lines[i:j])
			s.quoteSeen = true
			i = j - 1
			continue
		}

		if isSeparator(l.trim) || isReplyAbove(l.trim) || isHeaderBlock(lines, i) {
			return i
		}
		if isRule(l.trim) {
			if j := nextNonBlank(lines, i+1); j < len(lines) && j <= i+3 && headerBlockAt(lines, j, true) {
				return i
			}
		}
		s.keep(l)
	}
	return -1
}

// quoteBlock handles the block of '>' lines starting at lines[i] and returns
// the index of the line after it.
func (s *scanner) quoteBlock(i int) int {
	lines := s.lines
	j := i
	for j < len(lines) && (lines[j].quoted || (lines[j].blank() && j+1 < len(lines) && lines[j+1].quoted)) {
		j++
	}
	wedged := !s.quoteSeen && i > 0 && !lines[i-1].blank() && j < len(lines) && !lines[j].blank()
	if wedged && (s.promptSeen || endsWithColon(lines[i-1].trim)) {
		// Wedged between text lines and introduced by a colon: shell
		// prompts or a REPL session ("I ran:\n> node -v\nv20"), not a
		// quote.
		s.promptSeen = true
		for _, q := range lines[i:j] {
			s.keep(q)
		}
		return j
	}
	s.drop(lines[i:j])
	s.quoteSeen = true
	return j
}

// cutAt removes lines[cut:] as quoted history, along with a separator rule
// right above it.
func (s *scanner) cutAt(cut int) {
	for k := len(s.kept) - 1; k >= 0; k-- {
		t := strings.TrimSpace(s.kept[k])
		if t == "" {
			continue
		}
		if isRule(t) {
			s.kept = s.kept[:k]
		}
		break
	}
	if len(s.quote) > 0 {
		s.quote = append(s.quote, "")
	}
	for _, l := range s.lines[cut:] {
		s.quote = append(s.quote, l.raw)
	}
}

// nextNonBlank returns the index of the first non-blank line at or after i,
// or len(lines).
func nextNonBlank(lines []line, i int) int {
	for i < len(lines) && lines[i].blank() {
		i++
	}
	return i
}

// precededByRule reports whether the last non-blank line before lines[i] is
// a separator rule.
func precededByRule(lines []line, i int) bool {
	for k := i - 1; k >= 0 && k >= i-3; k-- {
		if !lines[k].blank() {
			return isRule(lines[k].trim) || isSeparator(lines[k].trim)
		}
	}
	return false
}

// isHeaderBlock reports whether a header block starts at lines[i].
func isHeaderBlock(lines []line, i int) bool {
	if k, _ := headerKeyOf(lines[i].trim); k == headerNone {
		return false
	}
	return headerBlockAt(lines, i, precededByRule(lines, i))
}

// rawLines returns the raw text of lines.
func rawLines(lines []line) []string {
	out := make([]string, len(lines))
	for i, l := range lines {
		out[i] = l.raw
	}
	return out
}

// splitSignature splits the kept lines of a message into body, signature and
// rest. The signature starts at the first "-- " delimiter line (or a "--"
// line followed by a few short lines), or at a mail-app signature line such
// as "Sent from my iPhone". Apps write that line at the end of what the sender
// typed, so any text after it is history in a form not otherwise recognised;
// it is returned as rest.
func splitSignature(lines []string) (body, sig, rest []string) {
	delim, app := -1, -1
	for i, l := range lines {
		t := strings.TrimSpace(l)
		if t == "--" && delim < 0 && (strings.HasPrefix(l, "-- ") || shortTrailer(lines[i+1:])) {
			delim = i
		}
		if app < 0 && delim < 0 && isMobileSignature(t) {
			app = i
		}
	}
	switch {
	case app >= 0 && (delim < 0 || app < delim):
		body, sig, rest = lines[:app], lines[app:app+1], lines[app+1:]
		if d := lastMobileSignature(body); d >= 0 {
			// "Sent from my iPhone" above "Get Outlook for iOS".
			body, sig = body[:d], append([]string{body[d], ""}, sig...)
		}
		return body, sig, rest
	case delim >= 0:
		return lines[:delim], lines[delim+1:], nil
	}
	return lines, nil, nil
}

// lastMobileSignature returns the index of the last non-blank line if it is
// a mail-app signature, or -1.
func lastMobileSignature(lines []string) int {
	k := len(lines) - 1
	for k >= 0 && strings.TrimSpace(lines[k]) == "" {
		k--
	}
	if k >= 0 && isMobileSignature(strings.TrimSpace(lines[k])) {
		return k
	}
	return -1
}

// shortTrailer reports whether lines look like a signature: one to twelve
// non-blank lines, short in all (a disclaimer may be long) and starting with
// a short line such as a name.
func shortTrailer(lines []string) bool {
	n, total, short := 0, 0, false
	for _, l := range lines {
		t := strings.TrimSpace(l)
		if t == "" {
			continue
		}
		n++
		size := utf8.RuneCountInString(t)
		total += size
		if n > 12 || total > 800 {
			return false
		}
		if n <= 3 && size <= 60 {
			short = true
		}
	}
	return short
}
