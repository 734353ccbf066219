package mailtext

import (
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"
)

// The rules that Trim applies, by the name it reports them under in
// Result.Cuts. doc/reply-trimming.md describes each with an example.
const (
	// RuleAttribution removes an attribution line ("On <date>, <name>
	// wrote:", "<name> schrieb:", "2026/3/3 Jane <jane@example.com>") that
	// introduces quoted history.
	RuleAttribution = "attribution"
	// RuleTrailingQuote removes the quoted ('>' or '|') blocks that no text
	// of the sender follows. Quotes that text follows are kept as the
	// context of inline answers.
	RuleTrailingQuote = "trailing-quote"
	// RuleHeaderBlock removes everything from an Outlook-style header block
	// (From/Sent/To/Subject, in many languages) on.
	RuleHeaderBlock = "header-block"
	// RuleSeparator removes everything from an "-----Original
	// Message-----" line on.
	RuleSeparator = "separator"
	// RuleReplyAbove removes everything from a help desk's "reply above
	// this line" marker on.
	RuleReplyAbove = "reply-above"
	// RuleSignature removes everything from a "-- " signature delimiter
	// on (RFC 3676, section 4.3), and a dangling "--" at the end.
	RuleSignature = "signature"
	// RuleAppSignature removes a mail app's "Sent from my iPhone" line.
	RuleAppSignature = "app-signature"
	// RuleAfterAppSignature removes the text below an app signature, which
	// apps write at the end of what the sender typed: it is history in a
	// form no other rule knows.
	RuleAfterAppSignature = "after-app-signature"
	// RuleForward reduces the header block of a forwarded message to one
	// "Forwarded: from X, date, subject" line and keeps the forwarded
	// content.
	RuleForward = "forward"
	// RuleQuoteOnly marks a message that is nothing but quoted history: its
	// whole text is kept below QuoteOnlyNote.
	RuleQuoteOnly = "quote-only"
	// RuleHTMLQuote is reported by callers of HTMLToTextTrimmed when it
	// removed the quoted parts that a client marked in its HTML.
	RuleHTMLQuote = "html-quote"
)

// QuoteOnlyNote is the line that Trim puts above a message that has no text
// of its own, only quoted history.
const QuoteOnlyNote = "[mailgate] This email has no text of its own; it only quotes earlier mail:"

// ForwardNotePrefix starts the line that replaces the header block of a
// forwarded message.
const ForwardNotePrefix = "Forwarded:"

// Cut records one thing that Trim removed or rewrote, so that an
// administrator can see why text is missing.
type Cut struct {
	// Rule is the name of the rule, one of the Rule constants.
	Rule string `json:"rule"`
	// First is the first non-blank line removed, shortened to 100
	// characters.
	First string `json:"first,omitempty"`
	// Lines is the number of lines removed, not counting trailing blank
	// lines.
	Lines int `json:"lines"`
}

// newCut describes the removal of raw lines by rule.
func newCut(rule string, raw []string) Cut {
	for len(raw) > 0 && isInvisibleLine(strings.TrimSpace(raw[len(raw)-1])) {
		raw = raw[:len(raw)-1]
	}
	c := Cut{Rule: rule, Lines: len(raw)}
	for _, l := range raw {
		if t := strings.TrimSpace(l); !isInvisibleLine(t) {
			c.First = shorten(t, 100)
			break
		}
	}
	return c
}

// shorten cuts s to at most n runes, marking the cut with "…".
func shorten(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	i := 0
	for k := range s {
		if i == n-1 {
			return s[:k] + "…"
		}
		i++
	}
	return s
}

// isInvisibleLine reports whether the white-space trimmed line t shows
// nothing: it is empty or holds only zero-width, format or tracking
// characters such as U+200B, U+FEFF or the U+1427 that mail trackers put on
// a line of their own.
func isInvisibleLine(t string) bool {
	for _, r := range t {
		if !isInvisible(r) {
			return false
		}
	}
	return true
}

// isInvisible reports whether r is white space or a character that shows
// nothing in a line of its own.
func isInvisible(r rune) bool {
	switch r {
	case '\u1427', '\u034f', '\u115f', '\u1160', '\u3164', '\uffa0':
		return true
	}
	return unicode.IsSpace(r) || unicode.Is(unicode.Cf, r)
}

// isQuoteMarked reports whether the trimmed line t carries a quote marker:
// '>' (RFC 3676, section 4.5) or the '|' that some clients use, also mixed
// ("> |"). A '|' line with another '|' after its markers is a table row, not
// a quote.
func isQuoteMarked(t string) bool {
	if strings.HasPrefix(t, ">") {
		return true
	}
	if !strings.HasPrefix(t, "|") {
		return false
	}
	rest := strings.TrimLeft(t, "|> \t")
	return !strings.Contains(rest, "|")
}

// forwardPhrases are the texts between the dashes of the separators that
// clients write above a forwarded message, lower case.
var forwardPhrases = [...]string{
	"forwarded message", "weitergeleitete nachricht", "message transféré", "message réexpédié",
	"mensaje reenviado", "messaggio inoltrato", "doorgestuurd bericht", "mensagem encaminhada",
	"mensagem reencaminhada", "wiadomość przekazana", "przekazana wiadomość", "vidarebefordrat meddelande",
	"пересылаемое сообщение", "пересланное сообщение", "videresendt meddelelse", "videresendt melding",
	"välitetty viesti", "přeposlaná zpráva", "továbbított üzenet", "iletilen ileti", "转发的邮件", "転送されたメッセージ",
	"forwarded email", "forwarded mail", "転送メッセージ", "已转发邮件", "轉寄的郵件",
	"начало переадресованного сообщения",
}

// forwardEndPhrases are the texts between the dashes of the lines that some
// clients (Yandex, mail.ru) write below a forwarded message.
var forwardEndPhrases = [...]string{
	"конец пересылаемого сообщения", "конец переадресованного сообщения", "end forwarded message",
	"end of forwarded message",
}

// isForwardEnd reports whether s closes a forwarded message:
// "-------- Конец пересылаемого сообщения --------".
func isForwardEnd(s string) bool {
	if len(s) > 120 || !strings.HasPrefix(s, "--") {
		return false
	}
	p := strings.ToLower(normalizeSpaces(strings.Trim(s, "-_=*~ \t:")))
	for _, fp := range forwardEndPhrases {
		if p == fp {
			return true
		}
	}
	return false
}

// isForwardSeparator reports whether s starts a forwarded message: Gmail's
// "---------- Forwarded message ---------", Apple Mail's "Begin forwarded
// message:", Thunderbird's "-------- Forwarded Message --------" and
// "-------- Original Message --------" (its inline forward), and their
// translations.
func isForwardSeparator(s string) bool {
	if len(s) > 120 || len(s) < 10 {
		return false
	}
	if strings.HasPrefix(s, "--") || strings.HasPrefix(s, "==") || strings.HasPrefix(s, "__") {
		if strings.HasPrefix(s, "-------- ") && strings.HasSuffix(s, " --------") {
			p := strings.ToLower(strings.TrimSpace(strings.Trim(s, "-")))
			if p == "original message" {
				return true
			}
		}
		p := strings.Trim(s, "-_=*~ \t:")
		p = strings.ToLower(normalizeSpaces(p))
		for _, fp := range forwardPhrases {
			if strings.Contains(p, fp) && len(p) <= len(fp)+12 {
				return true
			}
		}
		return false
	}
	p, ok := introPhrase(s)
	return ok && (slices.Contains(forwardIntros[:], p) || p == "forwarded message")
}

// forwardHeader reads the header block of a forwarded message that starts at
// or after lines[i] (blank lines before it are skipped) and returns the index
// of the first line after it and the one-line note that replaces it. A field
// that the client wrapped onto a second, indented line is joined.
func forwardHeader(lines []line, i int) (end int, note string) {
	var from, date, subject string
	last := (*string)(nil)
	j := nextNonBlank(lines, i)
	if j > i+2 {
		j = i
	}
	start, fields := j, 0
	if j < len(lines) {
		// Yandex and mail.ru: an attribution line instead of fields.
		if n, _ := attributionAt(lines, j); n > 0 && j+n <= len(lines) {
			var b strings.Builder
			for k := j; k < j+n; k++ {
				if k > j {
					b.WriteByte(' ')
				}
				b.WriteString(lines[k].trim)
			}
			return j + n, ForwardNotePrefix + " " + strings.TrimRight(normalizeSpaces(b.String()), ":： ")
		}
	}
	for j < len(lines) {
		l := lines[j]
		if l.blank() {
			// Some clients put a blank line between the fields.
			if k := j + 1; fields > 0 && k < len(lines) && isHeaderField(lines[k].trim) {
				j++
				continue
			}
			break
		}
		kind, value := headerKeyOf(l.trim)
		switch {
		case kind != headerNone:
			last = nil
			switch kind {
			case headerFrom:
				last = &from
			case headerSent:
				last = &date
			case headerSubject:
				last = &subject
			}
			if last != nil && *last == "" {
				*last = strings.Trim(value, "* \t")
			} else {
				last = nil
			}
		case isHeaderField(l.trim):
			last = nil
		case fields > 0 && (strings.HasPrefix(l.raw, " ") || strings.HasPrefix(l.raw, "\t")):
			if last != nil {
				*last += " " + l.trim
			}
		default:
			if fields == 0 {
				j = start
			}
			return j, forwardNote(from, date, subject)
		}
		fields++
		j++
	}
	return j, forwardNote(from, date, subject)
}

// isHeaderField reports whether t is a mail header field line: a known field
// name, or a name such as "Reply-To" or "Resent-From" followed by a colon.
func isHeaderField(t string) bool {
	if k, _ := headerKeyOf(t); k != headerNone {
		return true
	}
	i := strings.IndexByte(t, ':')
	if i < 2 || i > 24 {
		return false
	}
	for _, r := range strings.TrimRight(t[:i], "* ") {
		if !(r == '-' || 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z') {
			return false
		}
	}
	return strings.Contains(t[:i], "-")
}

// forwardNote writes the line that replaces a forwarded message's header
// block: "Forwarded: from X, date, subject".
func forwardNote(from, date, subject string) string {
	parts := make([]string, 0, 3)
	if from != "" {
		parts = append(parts, "from "+from)
	}
	for _, p := range [...]string{date, subject} {
		if p != "" {
			parts = append(parts, p)
		}
	}
	if len(parts) == 0 {
		return ForwardNotePrefix + " (no header)"
	}
	return ForwardNotePrefix + " " + strings.Join(parts, ", ")
}

// forwardSubjectPrefixes are the subject prefixes that mail clients put on
// forwards, lower case, without the colon: English, German (WG), French
// (TR), Spanish (RV), Italian (I), Dutch (Doorst), Portuguese (ENC),
// Swedish (VB), Polish (PD), Russian, Chinese, Japanese.
var forwardSubjectPrefixes = [...]string{
	"fwd", "fw", "wg", "tr", "rv", "i", "doorst", "enc", "vb", "pd", "пересл", "转发", "轉寄", "転送",
}

// IsForwardSubject reports whether a subject marks its message as a forward:
// "Fwd: …", "FW: …", "WG: …", "TR : …" and other languages' prefixes.
func IsForwardSubject(subject string) bool {
	s := strings.ToLower(strings.TrimSpace(subject))
	for _, p := range forwardSubjectPrefixes {
		if rest, ok := strings.CutPrefix(s, p); ok {
			rest = strings.TrimLeft(rest, " \u00a0")
			if strings.HasPrefix(rest, ":") || strings.HasPrefix(rest, "：") {
				return true
			}
		}
	}
	return false
}
