package mailtext

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/inbucket/html2text"
	"golang.org/x/net/html"
	"golang.org/x/net/html/atom"
)

// HTMLToText renders an HTML message body as readable plain text. Links are
// kept as "text ( url )", list items as "* item", line breaks, paragraphs and
// table rows as lines, blockquotes as "> " lines; <script>, <style> and
// <head> are dropped. The result is cleaned like Trim's: no trailing white
// space, at most one blank line in a row, no no-break spaces.
//
// HTML nested too deeply for the parser (unclosed <font> tags pile up in old
// mailers) is rendered by a simpler tokenizer-based pass instead.
func HTMLToText(htmlText string) (string, error) {
	doc, err := parseHTML(htmlText)
	if err != nil {
		return tokenText(htmlText), nil
	}
	return renderHTML(doc)
}

// HTMLToTextTrimmed is HTMLToText after removing the quoted history that mail
// clients mark in their HTML: Gmail's "gmail_quote" elements, the
// <blockquote type="cite"> of Apple Mail and Thunderbird (with Thunderbird's
// "moz-cite-prefix" attribution), Yahoo's "yahoo_quoted", Proton Mail's
// "protonmail_quote", and everything from Outlook's "divRplyFwdMsg" or
// "appendonsend" marker or its border-topped "From:" header block on. Quote
// elements that text of the sender follows stay as the context of inline
// answers, and forwarded messages stay. trimmedQuote reports whether
// something was removed. If removing the quotes
// would leave no text, as for a message that is only a forward, the whole
// body is rendered and trimmedQuote is false.
func HTMLToTextTrimmed(htmlText string) (text string, trimmedQuote bool, err error) {
	doc, err := parseHTML(htmlText)
	if err != nil {
		return tokenText(htmlText), false, nil
	}
	if !stripQuotedHTML(doc) {
		text, err = renderHTML(doc)
		return text, false, err
	}
	text, err = renderHTML(doc)
	if err != nil {
		return "", false, err
	}
	if text == "" {
		text, err = HTMLToText(htmlText)
		return text, false, err
	}
	return text, true, nil
}

// parseHTML parses an HTML document, ignoring a leading byte order mark.
func parseHTML(htmlText string) (*html.Node, error) {
	doc, err := html.Parse(strings.NewReader(strings.TrimPrefix(htmlText, "\ufeff")))
	if err != nil {
		return nil, fmt.Errorf("mailtext: parse html (%d bytes): %w", len(htmlText), err)
	}
	return doc, nil
}

var (
	// spacedLinkRe matches html2text's "( url )" link targets.
	spacedLinkRe = regexp.MustCompile(`\( ((?:[a-zA-Z][a-zA-Z0-9+.-]*:|www\.)[^\s()]*|[^\s()@]+@[^\s()]+) \)`)
	// spacedAddressRe matches "< jane@example.com >", made of "&lt;", a link
	// and "&gt;".
	spacedAddressRe = regexp.MustCompile(`< ([^\s<>]+@[^\s<>]+) >`)
	// spaceBeforePunctRe matches the space html2text puts between a link or
	// an inline element and the comma or full stop after it.
	spaceBeforePunctRe = regexp.MustCompile(`([^\s,.]) ([,.])(\s|$)`)
)

// renderHTML converts a parsed document to cleaned text.
func renderHTML(doc *html.Node) (string, error) {
	flattenInline(doc)
	breakTableRows(doc)
	s, err := html2text.FromHTMLNode(doc)
	if err != nil {
		return "", fmt.Errorf("mailtext: convert html to text: %w", err)
	}
	return cleanHTMLText(s), nil
}

// cleanHTMLText tidies the rendering of html2text: it replaces no-break
// spaces, drops zero-width characters, writes links as "text (url)", removes
// the space before a comma or full stop that follows a link, and cleans the
// lines.
func cleanHTMLText(s string) string {
	if strings.ContainsAny(s, "\u00a0\u200b\u200c\u200d\ufeff\u202f") {
		s = strings.NewReplacer("\u00a0", " ", "\u202f", " ", "\u200b", "", "\u200c", "", "\u200d", "", "\ufeff", "").Replace(s)
	}
	s = spacedLinkRe.ReplaceAllString(s, "($1)")
	s = spacedAddressRe.ReplaceAllString(s, "<$1>")
	s = spaceBeforePunctRe.ReplaceAllString(s, "$1$2$3")
	return cleanText(s)
}

// flattenInline replaces inline formatting elements (<span>, <font>, <b>,
// Outlook's <o:p> ...) by their children and merges the text nodes that
// become neighbours. html2text puts a space between any two text nodes, so
// without this "<span>Rech</span>nung" would read "Rech nung" and
// "<b>Jane</b>," would read "*Jane* ,".
func flattenInline(n *html.Node) {
	for c := n.FirstChild; c != nil; {
		next := c.NextSibling
		if c.Type == html.ElementNode {
			flattenInline(c)
			if isFormattingElement(c) {
				for gc := c.FirstChild; gc != nil; {
					gnext := gc.NextSibling
					c.RemoveChild(gc)
					n.InsertBefore(gc, c)
					gc = gnext
				}
				n.RemoveChild(c)
			}
		}
		c = next
	}
	for c := n.FirstChild; c != nil; c = c.NextSibling {
		for c.Type == html.TextNode && c.NextSibling != nil && c.NextSibling.Type == html.TextNode {
			c.Data += c.NextSibling.Data
			n.RemoveChild(c.NextSibling)
		}
	}
}

// isFormattingElement reports whether n is an inline element that only
// formats its text.
func isFormattingElement(n *html.Node) bool {
	switch n.DataAtom {
	case atom.Span, atom.Font, atom.B, atom.Strong, atom.I, atom.Em, atom.U, atom.S, atom.Strike, atom.Small,
		atom.Big, atom.Sup, atom.Sub, atom.Abbr, atom.Tt, atom.Mark, atom.Ins, atom.Del, atom.Label, atom.Time,
		atom.Bdi, atom.Bdo, atom.Nobr, atom.Wbr, atom.Cite, atom.Q, atom.Code, atom.Kbd, atom.Samp, atom.Var:
		return true
	case 0:
		return strings.Contains(n.Data, ":") // Office namespaces: <o:p>, <w:sdt>
	}
	return false
}

// tokenText renders HTML that the parser rejects: the text of the document
// with line breaks at block elements, without script, style and head.
func tokenText(htmlText string) string {
	z := html.NewTokenizer(strings.NewReader(htmlText))
	var b strings.Builder
	skip := 0 // depth inside script, style or head
	for {
		tt := z.Next()
		switch tt {
		case html.ErrorToken:
			return cleanHTMLText(b.String())
		case html.TextToken:
			if skip == 0 {
				b.WriteString(strings.Join(strings.Fields(string(z.Text())), " "))
				b.WriteByte(' ')
			}
		case html.StartTagToken, html.EndTagToken, html.SelfClosingTagToken:
			name, _ := z.TagName()
			a := atom.Lookup(name)
			switch a {
			case atom.Script, atom.Style, atom.Head, atom.Title:
				if tt == html.StartTagToken {
					skip++
				} else if tt == html.EndTagToken && skip > 0 {
					skip--
				}
			case atom.Br, atom.P, atom.Div, atom.Tr, atom.Li, atom.H1, atom.H2, atom.H3, atom.H4, atom.H5, atom.H6,
				atom.Blockquote, atom.Table, atom.Ul, atom.Ol, atom.Pre, atom.Hr:
				b.WriteByte('\n')
			}
		}
	}
}

// breakTableRows ends every table row with a line break: html2text would
// otherwise run all cells of a table together on one line.
func breakTableRows(n *html.Node) {
	for c := n.FirstChild; c != nil; c = c.NextSibling {
		if c.Type != html.ElementNode {
			continue
		}
		breakTableRows(c)
		if c.DataAtom == atom.Tr {
			c.AppendChild(&html.Node{Type: html.ElementNode, Data: "br", DataAtom: atom.Br})
		}
	}
}

// stripQuotedHTML removes the quoted parts of a reply from doc and reports
// whether it removed anything. A quote element that text of the sender
// follows is kept as the context of an inline answer, and a forwarded
// message is kept for Trim to reduce its header block.
func stripQuotedHTML(doc *html.Node) bool {
	type quote struct {
		n     *html.Node
		texts int // the number of text nodes before the quote's end
	}
	var quotes []quote
	var cutAt *html.Node
	texts := 0
	var walk func(n *html.Node) bool // returns false to stop
	walk = func(n *html.Node) bool {
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			switch {
			case c.Type == html.TextNode:
				if !isInvisibleLine(strings.TrimSpace(c.Data)) {
					texts++
				}
				continue
			case c.Type != html.ElementNode, isSignatureElement(c):
				continue
			}
			if isQuoteCut(c) {
				cutAt = c
				return false
			}
			if isQuoteElement(c) {
				if !isForwardQuote(c) {
					quotes = append(quotes, quote{c, texts})
				}
				continue
			}
			if !walk(c) {
				return false
			}
		}
		return true
	}
	walk(doc)
	removed := false
	for _, q := range quotes {
		if q.texts == texts { // no text follows
			q.n.Parent.RemoveChild(q.n)
			removed = true
		}
	}
	if cutAt != nil {
		cutFrom(cutAt)
	}
	return removed || cutAt != nil
}

// isSignatureElement reports whether n is a signature block that Gmail or
// Thunderbird marks, or an element whose text is not shown.
func isSignatureElement(n *html.Node) bool {
	switch n.DataAtom {
	case atom.Script, atom.Style, atom.Head:
		return true
	}
	class := " " + attr(n, "class") + " "
	return strings.Contains(class, " moz-signature ") || strings.Contains(class, " gmail_signature ")
}

// isForwardQuote reports whether the quote element n holds a forwarded
// message: Gmail starts it with "---------- Forwarded message ---------",
// Apple Mail puts "Begin forwarded message:" right above it.
func isForwardQuote(n *html.Node) bool {
	if isForwardSeparator(strings.TrimSpace(firstText(n))) {
		return true
	}
	for p := n.PrevSibling; p != nil; p = p.PrevSibling {
		switch {
		case p.Type == html.TextNode && strings.TrimSpace(p.Data) == "", p.DataAtom == atom.Br:
			continue
		case p.Type == html.TextNode:
			return isForwardSeparator(strings.TrimSpace(p.Data))
		case p.Type == html.ElementNode:
			return isForwardSeparator(strings.TrimSpace(firstText(p)))
		}
		return false
	}
	return false
}

// firstText returns the first non-blank text node inside n.
func firstText(n *html.Node) string {
	for c := n.FirstChild; c != nil; c = c.NextSibling {
		if c.Type == html.TextNode && strings.TrimSpace(c.Data) != "" {
			return c.Data
		}
		if t := firstText(c); t != "" {
			return t
		}
	}
	return ""
}

// cutFrom removes n and everything after it in document order, along with an
// <hr> right before it (Outlook draws one above its header block).
func cutFrom(n *html.Node) {
	prev := n.PrevSibling
	for prev != nil && prev.Type == html.TextNode && strings.TrimSpace(prev.Data) == "" {
		prev = prev.PrevSibling
	}
	if prev != nil && prev.DataAtom == atom.Hr {
		prev.Parent.RemoveChild(prev)
	}
	for n != nil && n.Parent != nil {
		parent := n.Parent
		for s := n; s != nil; {
			next := s.NextSibling
			parent.RemoveChild(s)
			s = next
		}
		if parent.DataAtom == atom.Body || parent.DataAtom == atom.Html {
			return
		}
		n = parent.NextSibling
		for n == nil && parent.Parent != nil {
			parent = parent.Parent
			if parent.DataAtom == atom.Body || parent.DataAtom == atom.Html {
				return
			}
			n = parent.NextSibling
		}
	}
}

// isQuoteElement reports whether n is a quoted-message element that is removed
// on its own (the reply may go on after it).
func isQuoteElement(n *html.Node) bool {
	class := " " + attr(n, "class") + " "
	switch n.DataAtom {
	case atom.Blockquote:
		return strings.EqualFold(attr(n, "type"), "cite") || strings.Contains(class, " gmail_quote ") ||
			strings.Contains(class, " protonmail_quote ")
	case atom.Div:
		return strings.Contains(class, " gmail_quote ") || strings.Contains(class, " gmail_quote_container ") ||
			strings.Contains(class, " moz-cite-prefix ") || strings.Contains(class, " yahoo_quoted ") ||
			strings.Contains(class, " protonmail_quote ") || strings.HasPrefix(attr(n, "id"), "yahoo_quoted")
	}
	return false
}

// isQuoteCut reports whether n starts the quoted history of an Outlook reply:
// everything from it on is history.
func isQuoteCut(n *html.Node) bool {
	if n.DataAtom != atom.Div {
		return false
	}
	id := attr(n, "id")
	if strings.HasSuffix(id, "divRplyFwdMsg") || id == "appendonsend" || id == "mail-editor-reference-message-container" {
		return true
	}
	if strings.Contains(" "+attr(n, "class")+" ", " OutlookMessageHeader ") {
		return true
	}
	style := strings.ToLower(strings.ReplaceAll(attr(n, "style"), " ", ""))
	if strings.Contains(style, "border-top:solid#e1e1e1") || strings.Contains(style, "border-top:solid#b5c4df") {
		kind, _ := headerKeyOf(strings.TrimSpace(leadingText(n, 80)))
		return kind == headerFrom
	}
	return false
}

// leadingText returns about the first max bytes of the text inside n.
func leadingText(n *html.Node, max int) string {
	var b strings.Builder
	var walk func(*html.Node)
	walk = func(n *html.Node) {
		for c := n.FirstChild; c != nil && b.Len() < max; c = c.NextSibling {
			if c.Type == html.TextNode {
				b.WriteString(c.Data)
			}
			walk(c)
		}
	}
	walk(n)
	return b.String()
}

// attr returns the value of n's attribute key, or "".
func attr(n *html.Node, key string) string {
	for _, a := range n.Attr {
		if a.Key == key {
			return a.Val
		}
	}
	return ""
}
