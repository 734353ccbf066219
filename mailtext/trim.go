package mailtext

import (
	"strings"
	"unicode/utf8"
)

// Result is what Trim made of a message body.
type Result struct {
	// Text is the new part of the message: what the sender wrote, without
	// quoted history and signature, cleaned of trailing white space and
	// repeated blank lines, followed by the content of any message the
	// sender forwarded. It is never empty when the input has visible text.
	Text string
	// Trimmed reports whether quoted history, a signature or a forwarded
	// message's header block was removed.
	Trimmed bool
	// Quote is the removed quoted history, cleaned; it may be empty.
	Quote string
	// Signature is the removed signature without its "-- " delimiter,
	// cleaned; it may be empty.
	Signature string
	// Cuts lists what each rule removed or rewrote: the cuts of history and
	// forwards in the order of the text, then the signature's.
	Cuts []Cut
}

// Trim cuts the quoted history and the signature off the plain-text body of a
// reply and returns the new part.
//
// Quoted history starts at an attribution line ("On <date>, <name> wrote:"
// and its translations, also wrapped over up to three lines, or verbless as
// "2026/3/3 Jane <jane@example.com>"), an Outlook-style header block
// (From/Sent/To/Subject in many languages, with or without a "____" rule
// above it), an "-----Original Message-----" separator, or a help desk's
// "reply above this line" marker; everything from there on is removed.
// Blocks of quoted lines ('>' or '|') are kept when text of the sender
// follows them, as the context of inline answers; trailing ones are removed
// with the attribution line that introduces them. The signature starts at a
// "-- " line (or a "--" line followed by a few short lines or by nothing); a
// closing "Sent from my iPhone"-style line is removed too.
//
// A forwarded message ("---------- Forwarded message ---------", "Begin
// forwarded message:" and their translations) is kept below the sender's
// text, its header block reduced to one "Forwarded: from X, date, subject"
// line.
//
// If trimming would leave nothing, as for a message that is only quoted
// history, Trim returns QuoteOnlyNote above the whole text, cleaned, with
// Trimmed false.
func Trim(text string) Result {
	return TrimWith(text, Options{})
}

// Options changes how TrimWith trims.
type Options struct {
	// Forwarded tells that the message is a forward, as its subject says
	// (see IsForwardSubject). Outlook writes forwards like replies, with a
	// header block or an "-----Original Message-----" separator; in a
	// forward, the first of them starts the forwarded message, which is
	// kept.
	Forwarded bool
}

// TrimWith is Trim with options.
func TrimWith(text string, opts Options) Result {
	text = strings.TrimPrefix(normalizeNewlines(text), "\ufeff")
	lines := splitLines(text)

	s := scanner{lines: lines, kept: make([]string, 0, len(lines))}
	if cut, rule := s.scan(); cut >= 0 {
		switch {
		case opts.Forwarded && (rule == RuleHeaderBlock || rule == RuleSeparator):
			s.dropPending()
			s.trimRuleAbove()
			headerAt := 1
			if k, _ := headerKeyOf(lines[cut].trim); k != headerNone {
				headerAt = 0
			}
			s.forward(lines[cut:], headerAt)
		default:
			s.cutAt(cut, rule)
		}
	}
	s.dropPending()
	body, sig, rest := splitSignature(s.kept)
	if cut := s.kept[len(body) : len(s.kept)-len(rest)]; len(cut) > 0 {
		rule := RuleAppSignature
		if strings.TrimSpace(cut[0]) == "--" {
			rule = RuleSignature
		}
		s.cuts = append(s.cuts, newCut(rule, cut))
	}
	quote := s.quote
	if strings.TrimSpace(strings.Join(rest, "")) != "" {
		s.cuts = append(s.cuts, newCut(RuleAfterAppSignature, rest))
		q := make([]string, 0, len(rest)+1+len(quote))
		q = append(append(q, rest...), "")
		quote = append(q, quote...)
	}
	res := Result{
		Text:      cleanLines(body),
		Trimmed:   len(s.cuts) > 0,
		Quote:     cleanLines(quote),
		Signature: cleanLines(sig),
		Cuts:      s.cuts,
	}
	if res.Text == QuoteOnlyNote {
		res.Text = "" // Trim's own output, trimmed again
	}
	if fwd := cleanLines(s.forwarded); fwd != "" {
		if res.Text != "" {
			res.Text += "\n\n"
		}
		res.Text += fwd
		return res
	}
	if res.Text == "" {
		all := cleanLines(rawLines(lines))
		if all == "" {
			return Result{}
		}
		if len(quote) == 0 || strings.HasPrefix(all, QuoteOnlyNote) {
			return Result{Text: all}
		}
		return Result{Text: QuoteOnlyNote + "\n\n" + all, Cuts: []Cut{{Rule: RuleQuoteOnly, Lines: len(lines)}}}
	}
	return res
}

// scanner sorts the lines of a message into kept text, quoted history and
// forwarded messages.
type scanner struct {
	lines     []line
	kept      []string // the lines the sender wrote, with the quotes they answer
	quote     []string // the lines removed as quoted history
	forwarded []string // forwarded messages with their header notes
	cuts      []Cut
	pending   []span // quote blocks that no text has followed yet
	inSig     bool   // a signature started after a pending quote
}

// span is the range lines[start:end].
type span struct{ start, end int }

// keep keeps l, the next line of s.lines, as text of the new message. Text that follows pending quote
// blocks makes them context that is kept; a signature does not.
func (s *scanner) keep(l line) {
	if l.blank() && len(s.pending) > 0 && !s.inSig {
		s.pending[len(s.pending)-1].end++ // l is the line after the block
		return
	}
	if !l.blank() && len(s.pending) > 0 && !s.inSig {
		if isSignatureStart(l) {
			s.inSig = true
		} else {
			for _, b := range s.pending {
				for _, q := range s.lines[b.start:b.end] {
					s.kept = append(s.kept, q.raw)
				}
			}
			s.pending = s.pending[:0]
		}
	}
	s.kept = append(s.kept, l.raw)
}

// isSignatureStart reports whether l starts a signature: a "--" delimiter or
// an app signature line.
func isSignatureStart(l line) bool {
	return l.trim == "--" || isMobileSignature(l.trim)
}

// drop removes ls as quoted history by rule.
func (s *scanner) drop(ls []line, rule string) {
	raw := rawLines(ls)
	if len(s.quote) > 0 {
		s.quote = append(s.quote, "")
	}
	s.quote = append(s.quote, raw...)
	s.cuts = append(s.cuts, newCut(rule, raw))
}

// dropPending removes the quote blocks that no text followed.
func (s *scanner) dropPending() {
	for _, b := range s.pending {
		s.drop(s.lines[b.start:b.end], RuleTrailingQuote)
	}
	s.pending = s.pending[:0]
}

// scan keeps and drops lines up to the start of the quoted history, whose
// index it returns with the rule that found it, or -1 if there is none.
func (s *scanner) scan() (int, string) {
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
		if isForwardSeparator(l.trim) {
			s.dropPending()
			s.trimRuleAbove()
			s.forward(lines[i:], 1)
			return -1, ""
		}

		if n, strong := attributionAt(lines, i); n > 0 {
			if j := nextNonBlank(lines, i+n); j < len(lines) && lines[j].quoted {
				s.drop(lines[i:j], RuleAttribution) // the quote block follows
				i = j - 1
				continue
			}
			if strong {
				return i, RuleAttribution
			}
		} else if j := nextNonBlank(lines, i+1); j < len(lines) && lines[j].quoted && looseAttribution(l.trim) {
			s.drop(lines[i:j], RuleAttribution)
			i = j - 1
			continue
		}

		switch {
		case isSeparator(l.trim):
			return i, RuleSeparator
		case isReplyAbove(l.trim):
			return i, RuleReplyAbove
		case isHeaderBlock(lines, i):
			return i, RuleHeaderBlock
		case isRule(l.trim):
			if j := nextNonBlank(lines, i+1); j < len(lines) && j <= i+3 && headerBlockAt(lines, j, true) {
				return i, RuleHeaderBlock
			}
		}
		s.keep(l)
	}
	return -1, ""
}

// quoteBlock sets the block of quoted lines starting at lines[i] aside until
// it is known whether text follows it, and returns the index of the line
// after it.
func (s *scanner) quoteBlock(i int) int {
	lines := s.lines
	j := i
	for j < len(lines) && (lines[j].quoted || (lines[j].blank() && j+1 < len(lines) && lines[j+1].quoted)) {
		j++
	}
	s.pending = append(s.pending, span{i, j})
	return j
}

// forward handles the forwarded message that starts at lines[0], its header
// block at lines[headerAt] (after a separator line, or without one): the
// separator and header block become one note line, the content is kept, and
// so are the messages it forwards in turn. Content that the client quoted
// (an HTML rendering of Apple Mail's forward) loses one level of quote
// marks.
func (s *scanner) forward(lines []line, headerAt int) {
	for len(lines) > 0 {
		body := lines[headerAt:]
		if j := nextNonBlank(body, 0); j < len(body) && body[j].quoted {
			body = unquoteBlock(body[j:])
		}
		end, note := forwardHeader(body, 0)
		s.cuts = append(s.cuts, newCut(RuleForward, append(rawLines(lines[:headerAt]), rawLines(body[:end])...)))
		if len(s.forwarded) > 0 {
			s.forwarded = append(s.forwarded, "")
		}
		s.forwarded = append(s.forwarded, note, "")
		lines, headerAt = nil, 1
		for i := end; i < len(body); i++ {
			if isForwardSeparator(body[i].trim) {
				lines = body[i:]
				break
			}
			if isForwardEnd(body[i].trim) {
				s.cuts = append(s.cuts, newCut(RuleForward, rawLines(body[i:i+1])))
			} else {
				s.forwarded = append(s.forwarded, body[i].raw)
			}
		}
	}
}

// unquoteBlock removes one level of quote marks from the block of quoted
// lines that ls starts with.
func unquoteBlock(ls []line) []line {
	k := 0
	for k < len(ls) && (ls[k].quoted || ls[k].blank()) {
		k++
	}
	out := make([]line, 0, len(ls))
	for _, l := range ls[:k] {
		r := strings.TrimLeft(l.raw, " \t")
		if r != "" && (r[0] == '>' || r[0] == '|') {
			r = strings.TrimPrefix(r[1:], " ")
		}
		out = append(out, newLine(r))
	}
	return append(out, ls[k:]...)
}

// trimRuleAbove removes a separator rule from the end of the kept lines.
func (s *scanner) trimRuleAbove() {
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
}

// cutAt removes lines[cut:] as quoted history found by rule, along with a
// separator rule right above it.
func (s *scanner) cutAt(cut int, rule string) {
	s.dropPending()
	s.trimRuleAbove()
	if len(s.quote) > 0 {
		s.quote = append(s.quote, "")
	}
	raw := rawLines(s.lines[cut:])
	s.quote = append(s.quote, raw...)
	s.cuts = append(s.cuts, newCut(rule, raw))
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
		if t == "--" && delim < 0 && (strings.HasPrefix(l, "-- ") || shortTrailer(lines[i+1:]) || allBlank(lines[i+1:])) {
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

// allBlank reports whether lines show nothing.
func allBlank(lines []string) bool {
	for _, l := range lines {
		if !isInvisibleLine(strings.TrimSpace(l)) {
			return false
		}
	}
	return true
}
