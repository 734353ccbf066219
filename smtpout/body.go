package smtpout

import (
	"html"
	"net/url"
	"strings"
	"unicode/utf8"
)

// normalizeBody makes text safe for a body part: valid UTF-8, LF line
// endings, and no control characters other than LF and tab.
func normalizeBody(s string) string {
	if cleanBody(s) {
		return s // the common case: nothing to change, nothing to copy
	}
	return rewriteBody(s)
}

// rewriteBody is normalizeBody's general path, for text cleanBody refuses.
func rewriteBody(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	s = strings.ReplaceAll(s, "\r\n", "\n")
	s = strings.ReplaceAll(s, "\r", "\n")
	return strings.Map(func(r rune) rune {
		if (r < 0x20 && r != '\n' && r != '\t') || r == 0x7f {
			return -1
		}
		return r
	}, s)
}

// cleanBody reports whether normalizeBody would return s unchanged:
// valid UTF-8 without CR or control characters other than LF and tab.
// Every byte below 0x80 is a whole rune, so a byte scan finds them.
func cleanBody(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < 0x20 && c != '\n' && c != '\t') || c == 0x7f {
			return false
		}
	}
	return utf8.ValidString(s)
}

// quoteIntro is the line above a quoted message.
func quoteIntro(q *Quote) string {
	name := cleanHeaderText(q.Name)
	if name == "" {
		name = "you"
	}
	if q.Date.IsZero() {
		return name + " wrote:"
	}
	return "On " + q.Date.Format("Mon, 2 Jan 2006 at 15:04") + ", " + name + " wrote:"
}

// normalized returns a shallow copy of r whose texts (Text, FooterText,
// the quote's Text) are normalized (normalizeBody), so that the two parts
// read them without normalizing each again.
func normalized(r *Reply) *Reply {
	n := *r
	n.Text = normalizeBody(r.Text)
	n.FooterText = normalizeBody(r.FooterText)
	if r.Quote != nil {
		q := *r.Quote
		q.Text = normalizeBody(q.Text)
		n.Quote = &q
	}
	return &n
}

// plainBody renders the text/plain part of a normalized reply: the
// operator's text, the links, the footer and the quote, separated by
// blank lines.
func plainBody(r *Reply) string {
	var sections []string
	if t := strings.TrimRight(r.Text, " \t\n"); t != "" {
		sections = append(sections, t)
	}
	if links := usableLinks(r.Links); len(links) > 0 {
		var b strings.Builder
		b.WriteString(linksHeading(r))
		for _, l := range links {
			b.WriteString("\n- ")
			u := cleanHeaderText(l.URL)
			if label := cleanHeaderText(l.Label); label != "" && label != u {
				b.WriteString(label)
				b.WriteString(": ")
			}
			b.WriteString(u)
			if reason := cleanHeaderText(l.Reason); reason != "" {
				b.WriteString(" (" + reason + ")")
			}
		}
		sections = append(sections, b.String())
	}
	if f := strings.TrimRight(r.FooterText, " \t\n"); f != "" {
		sections = append(sections, f)
	}
	if hasQuote(r) {
		var b strings.Builder
		b.WriteString(quoteIntro(r.Quote))
		for line := range strings.SplitSeq(strings.TrimRight(r.Quote.Text, " \t\n"), "\n") {
			switch {
			case line == "":
				b.WriteString("\n>")
			case strings.HasPrefix(line, ">"):
				b.WriteString("\n>")
				b.WriteString(line)
			default:
				b.WriteString("\n> ")
				b.WriteString(line)
			}
		}
		sections = append(sections, b.String())
	}
	return strings.Join(sections, "\n\n") + "\n"
}

// usableLinks returns the links that have a URL.
func usableLinks(links []Link) []Link {
	var out []Link
	for _, l := range links {
		if cleanHeaderText(l.URL) != "" {
			out = append(out, l)
		}
	}
	return out
}

// hasQuote reports whether the normalized reply r has a quote with text.
func hasQuote(r *Reply) bool {
	return r.Quote != nil && strings.TrimSpace(r.Quote.Text) != ""
}

func linksHeading(r *Reply) string {
	if h := cleanHeaderText(r.LinksHeading); h != "" {
		return h
	}
	return defaultLinksHeading
}

// htmlBody renders the text/html part of a normalized reply. Everything
// but FooterHTML is escaped.
func htmlBody(r *Reply) string {
	var b strings.Builder
	b.Grow(htmlSizeHint(r))
	b.WriteString("<!DOCTYPE html>\n<html>\n<head>\n<meta http-equiv=\"Content-Type\" content=\"text/html; charset=utf-8\">\n</head>\n<body>\n")
	if strings.TrimSpace(r.Text) != "" {
		b.WriteString("<div class=\"reply\">\n")
		writeHTMLParagraphs(&b, r.Text)
		b.WriteString("</div>\n")
	}
	if links := usableLinks(r.Links); len(links) > 0 {
		b.WriteString("<div class=\"links\">\n<p>")
		b.WriteString(html.EscapeString(linksHeading(r)))
		b.WriteString("</p>\n<ul>\n")
		for _, l := range links {
			u := cleanHeaderText(l.URL)
			label := cleanHeaderText(l.Label)
			if label == "" {
				label = u
			}
			b.WriteString("<li>")
			if linkable(u) {
				b.WriteString(`<a href="` + html.EscapeString(u) + `">` + html.EscapeString(label) + `</a>`)
			} else {
				b.WriteString(html.EscapeString(label))
				if label != u {
					b.WriteString(": " + html.EscapeString(u))
				}
			}
			if reason := cleanHeaderText(l.Reason); reason != "" {
				b.WriteString(" (" + html.EscapeString(reason) + ")")
			}
			b.WriteString("</li>\n")
		}
		b.WriteString("</ul>\n</div>\n")
	}
	switch {
	case r.FooterHTML != "":
		b.WriteString("<div class=\"footer\">\n")
		b.WriteString(strings.ToValidUTF8(r.FooterHTML, "\uFFFD"))
		b.WriteString("\n</div>\n")
	case strings.TrimSpace(r.FooterText) != "":
		b.WriteString("<div class=\"footer\">\n")
		writeHTMLParagraphs(&b, r.FooterText)
		b.WriteString("</div>\n")
	}
	if hasQuote(r) {
		b.WriteString("<div class=\"quote\">\n<p>")
		b.WriteString(html.EscapeString(quoteIntro(r.Quote)))
		b.WriteString("</p>\n<blockquote type=\"cite\" style=\"margin:0 0 0 .8ex;border-left:1px solid #ccc;padding-left:1ex\">\n")
		writeHTMLParagraphs(&b, r.Quote.Text)
		b.WriteString("</blockquote>\n</div>\n")
	}
	b.WriteString("</body>\n</html>\n")
	return b.String()
}

// htmlSizeHint estimates the length of r's HTML part, so that htmlBody
// writes it into one buffer instead of growing one by copying: the fixed
// markup, and each text with room for its escapes and line breaks. It
// only sizes the buffer; the HTML does not depend on it.
func htmlSizeHint(r *Reply) int {
	n := 1024 + len(r.FooterHTML)
	for _, t := range []string{r.Text, r.FooterText} {
		n += len(t) * 5 / 4
	}
	if r.Quote != nil {
		n += len(r.Quote.Text) * 5 / 4
	}
	for _, l := range r.Links {
		n += 2*len(l.URL) + len(l.Label) + len(l.Reason) + 32
	}
	return n
}

// writeHTMLParagraphs writes normalized text as <p> paragraphs: a blank
// line starts a new paragraph, a single newline becomes <br>.
func writeHTMLParagraphs(b *strings.Builder, text string) {
	open := false
	for line := range strings.SplitSeq(text, "\n") {
		if strings.TrimSpace(line) == "" {
			if open {
				b.WriteString("</p>\n")
				open = false
			}
			continue
		}
		if open {
			b.WriteString("<br>\n")
		} else {
			b.WriteString("<p>")
			open = true
		}
		writeLinkified(b, line)
	}
	if open {
		b.WriteString("</p>\n")
	}
}

// writeLinkified writes line to b escaped for HTML, with the http and
// https URLs in it turned into links.
func writeLinkified(b *strings.Builder, line string) {
	if !strings.Contains(line, "://") {
		// No URL (every match has one).
		writeEscapedHTML(b, line)
		return
	}
	last := 0
	for _, m := range findURLs(line) {
		u := trimURL(line[m[0]:m[1]])
		if !linkable(u) {
			continue
		}
		end := m[0] + len(u)
		writeEscapedHTML(b, line[last:m[0]])
		b.WriteString(`<a href="`)
		writeEscapedHTML(b, u)
		b.WriteString(`">`)
		writeEscapedHTML(b, u)
		b.WriteString(`</a>`)
		last = end
	}
	writeEscapedHTML(b, line[last:])
}

// writeEscapedHTML writes html.EscapeString(s) to b without building the
// escaped string first: the five characters it escapes, and the runs
// between them as they are (FuzzWriteEscapedHTML compares the two).
func writeEscapedHTML(b *strings.Builder, s string) {
	for {
		i := strings.IndexAny(s, `<>&'"`)
		if i < 0 {
			b.WriteString(s)
			return
		}
		b.WriteString(s[:i])
		switch s[i] {
		case '<':
			b.WriteString("&lt;")
		case '>':
			b.WriteString("&gt;")
		case '&':
			b.WriteString("&amp;")
		case '\'':
			b.WriteString("&#39;")
		case '"':
			b.WriteString("&#34;")
		}
		s = s[i+1:]
	}
}

// findURLs returns the index pairs of the http and https URLs in operator
// text, leftmost first, as the regular expression
// `(?i)\bhttps?://[^\s<>"'\x60]+` would find them (FuzzFindURLs compares
// them), without the regexp engine, which cost a third of a reply's
// rendering. A match is trimmed of trailing punctuation by trimURL before
// it becomes a link.
func findURLs(line string) [][]int {
	var out [][]int
	for i := 0; i < len(line); {
		j := strings.Index(line[i:], "://")
		if j < 0 {
			break
		}
		colon := i + j
		// The scheme ends at the colon: "http" or "https" in any case,
		// after a non-word byte or the start of the line.
		start := -1
		for _, n := range []int{5, 4} {
			if s := colon - n; s >= i && strings.EqualFold(line[s:colon], "https"[:n]) && (s == 0 || !isWordByte(line[s-1])) {
				start = s
				break
			}
		}
		end := colon + 3
		for end < len(line) && !urlStop(line[end]) {
			end++
		}
		if start < 0 || end == colon+3 {
			i = colon + 1
			continue
		}
		out = append(out, []int{start, end})
		i = end
	}
	return out
}

// isWordByte reports whether c is an ASCII word character, as \b sees it.
func isWordByte(c byte) bool {
	return c == '_' || '0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
}

// urlStop reports whether c ends a URL: \s (RE2's ASCII space class) or
// one of <>"'`.
func urlStop(c byte) bool {
	switch c {
	case '\t', '\n', '\f', '\r', ' ', '<', '>', '"', '\'', '`':
		return true
	}
	return false
}

// trimURL drops trailing punctuation that belongs to the sentence rather
// than the URL, and closing brackets that have no opening one in the URL.
func trimURL(u string) string {
	for len(u) > 0 {
		c := u[len(u)-1]
		switch c {
		case '.', ',', ';', ':', '!', '?', '*':
		case ')', ']', '}':
			if strings.Count(u, opening(c)) >= strings.Count(u, string(c)) {
				return u
			}
		default:
			return u
		}
		u = u[:len(u)-1]
	}
	return u
}

// opening returns the opening bracket of the closing bracket c.
func opening(c byte) string {
	switch c {
	case ')':
		return "("
	case ']':
		return "["
	}
	return "{"
}

// linkable reports whether u is an absolute http or https URL with a host.
func linkable(u string) bool {
	p, err := url.Parse(u)
	if err != nil || p.Host == "" {
		return false
	}
	s := strings.ToLower(p.Scheme)
	return s == "http" || s == "https"
}
