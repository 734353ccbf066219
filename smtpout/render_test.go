package smtpout

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"html"
	"io"
	"net/mail"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-message"
	gmmail "github.com/emersion/go-message/mail"
)

// rendered is a Render result parsed back with go-message.
type rendered struct {
	raw    []byte
	header gmmail.Header
	types  []string // media types of all entities, depth first
	plain  string
	html   string
	files  []renderedFile
}

type renderedFile struct {
	name, contentType string
	content           []byte
}

func parseRendered(t *testing.T, raw []byte) *rendered {
	t.Helper()
	if err := checkWireFormat(raw); err != nil {
		t.Fatalf("wire format: %v", err)
	}
	e, err := message.Read(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("parse rendered message: %v\n%s", err, raw)
	}
	r := &rendered{raw: raw, header: gmmail.Header{Header: e.Header}}
	err = e.Walk(func(_ []int, ent *message.Entity, err error) error {
		if err != nil && !message.IsUnknownCharset(err) {
			return err
		}
		ct, _, err := ent.Header.ContentType()
		if err != nil {
			return err
		}
		r.types = append(r.types, ct)
		if strings.HasPrefix(ct, "multipart/") {
			return nil
		}
		body, err := io.ReadAll(ent.Body)
		if err != nil {
			return err
		}
		disp, _, _ := ent.Header.ContentDisposition()
		switch {
		case disp == "attachment":
			ah := gmmail.AttachmentHeader{Header: ent.Header}
			name, err := ah.Filename()
			if err != nil {
				return err
			}
			r.files = append(r.files, renderedFile{name, ct, body})
		case ct == "text/plain":
			r.plain = strings.ReplaceAll(string(body), "\r\n", "\n")
		case ct == "text/html":
			r.html = strings.ReplaceAll(string(body), "\r\n", "\n")
		}
		return nil
	})
	if err != nil {
		t.Fatalf("walk rendered message: %v\n%s", err, raw)
	}
	return r
}

// headerLines returns the names of the top-level header fields of raw, in
// order, with continuation lines folded into their field.
func headerLines(raw []byte) []string {
	head, _, _ := bytes.Cut(raw, []byte("\r\n\r\n"))
	var names []string
	for line := range strings.SplitSeq(string(head), "\r\n") {
		if line == "" || line[0] == ' ' || line[0] == '\t' {
			continue
		}
		name, _, _ := strings.Cut(line, ":")
		names = append(names, name)
	}
	return names
}

func baseReply() *Reply {
	return &Reply{
		From:      mail.Address{Name: "ACME Support", Address: "support@acme.example"},
		To:        mail.Address{Name: "Jane Doe", Address: "jane@example.org"},
		Subject:   "Re: Order 42",
		MessageID: "reply-1@mailgate.acme.example",
		Date:      time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC),
		Text:      "Hello Jane,\n\nyour order has shipped.",
	}
}

func mustRender(t *testing.T, r *Reply) *rendered {
	t.Helper()
	raw, err := Render(r)
	if err != nil {
		t.Fatalf("Render: %v", err)
	}
	return parseRendered(t, raw)
}

func TestRenderStructure(t *testing.T) {
	r := mustRender(t, baseReply())
	if got, want := strings.Join(r.types, ","), "multipart/alternative,text/plain,text/html"; got != want {
		t.Errorf("structure = %s, want %s", got, want)
	}
	if !strings.Contains(r.plain, "your order has shipped.") {
		t.Errorf("plain body = %q", r.plain)
	}
	for _, name := range []string{"Auto-Submitted", "User-Agent", "X-Mailer", "Thread-Index", "Thread-Topic", "Reply-To", "In-Reply-To", "References"} {
		if v := r.header.Get(name); v != "" {
			t.Errorf("unexpected %s: %q", name, v)
		}
	}
	if got := r.header.Get("Date"); got != "Wed, 04 Mar 2026 05:06:07 +0000" {
		t.Errorf("Date = %q", got)
	}
	if got := r.header.Get("MIME-Version"); got != "1.0" {
		t.Errorf("MIME-Version = %q", got)
	}
	for _, part := range []string{"Content-Type: text/plain; charset=UTF-8", "Content-Transfer-Encoding: quoted-printable", "Content-Type: text/html; charset=UTF-8"} {
		if !bytes.Contains(r.raw, []byte(part)) {
			t.Errorf("missing %q", part)
		}
	}
}

func TestRenderThreading(t *testing.T) {
	in := baseReply()
	in.InReplyTo = "<cust-2@mail.example.org>"
	in.References = []string{"cust-1@mail.example.org", "<cust-2@mail.example.org>", "bad id@x", "cust-1@mail.example.org", ""}
	in.ThreadTopic = "Order 42"
	r := mustRender(t, in)
	if got := r.header.Get("Message-Id"); got != "<reply-1@mailgate.acme.example>" {
		t.Errorf("Message-ID = %q", got)
	}
	if id, err := r.header.MessageID(); err != nil || id != "reply-1@mailgate.acme.example" {
		t.Errorf("MessageID() = %q, %v", id, err)
	}
	if got := r.header.Get("In-Reply-To"); got != "<cust-2@mail.example.org>" {
		t.Errorf("In-Reply-To = %q", got)
	}
	refs, err := r.header.MsgIDList("References")
	if err != nil || strings.Join(refs, " ") != "cust-1@mail.example.org cust-2@mail.example.org" {
		t.Errorf("References = %q, %v", refs, err)
	}
	if got := r.header.Get("Thread-Topic"); got != "Order 42" {
		t.Errorf("Thread-Topic = %q", got)
	}
	idx, err := base64.StdEncoding.DecodeString(r.header.Get("Thread-Index"))
	if err != nil || len(idx) != 22 {
		t.Fatalf("Thread-Index = %q (%d bytes, %v)", r.header.Get("Thread-Index"), len(idx), err)
	}

	// A caller-computed index is kept.
	in.ThreadIndex = base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{1, 0xdc, 3}, 9)) // 22 + 5 bytes: a child index
	r = mustRender(t, in)
	if got := r.header.Get("Thread-Index"); got != in.ThreadIndex {
		t.Errorf("Thread-Index = %q, want %q", got, in.ThreadIndex)
	}
}

func TestRenderManyReferences(t *testing.T) {
	in := baseReply()
	for i := range 50 {
		in.References = append(in.References, strings.Repeat("x", 40)+string(rune('a'+i%26))+string(rune('a'+i/26))+"@example.org")
	}
	r := mustRender(t, in)
	refs, err := r.header.MsgIDList("References")
	if err != nil {
		t.Fatal(err)
	}
	if len(refs) != maxReferences || refs[0] != strings.Trim(in.References[0], "<>") || refs[len(refs)-1] != in.References[49] {
		t.Errorf("References kept %d: first %q last %q", len(refs), refs[0], refs[len(refs)-1])
	}
	if !bytes.Contains(r.raw, []byte("References: <")) || !bytes.Contains(r.raw, []byte(">\r\n <")) {
		t.Errorf("References not folded:\n%s", r.raw)
	}
}

func TestNewThreadIndex(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	a, b := NewThreadIndex(at), NewThreadIndex(at)
	ra, _ := base64.StdEncoding.DecodeString(a)
	rb, _ := base64.StdEncoding.DecodeString(b)
	if len(ra) != 22 || len(rb) != 22 {
		t.Fatalf("lengths %d %d", len(ra), len(rb))
	}
	if !bytes.Equal(ra[:6], rb[:6]) || bytes.Equal(ra[6:], rb[6:]) {
		t.Errorf("same time should share the FILETIME and differ in the GUID: %x %x", ra, rb)
	}
	// FILETIME for 2026-01-02T03:04:05Z is 0x01DC7B8C...; Outlook indexes
	// start with its high bytes, 0x01 first.
	if ra[0] != 0x01 || ra[1] != 0xdc {
		t.Errorf("FILETIME bytes = %x", ra[:6])
	}
	later := NewThreadIndex(at.Add(time.Hour))
	rl, _ := base64.StdEncoding.DecodeString(later)
	if bytes.Compare(rl[:6], ra[:6]) <= 0 {
		t.Errorf("later index %x not after %x", rl[:6], ra[:6])
	}
}

func TestRenderEncodesNonASCII(t *testing.T) {
	in := baseReply()
	in.From.Name = "Jürgen Müller – Support"
	in.To.Name = "Zoë 山田"
	in.Subject = "Re: Grüße aus Köln 👋"
	in.Headers = map[string]string{"X-Mailgate-Channel": "Ünïcode channel"}
	r := mustRender(t, in)
	head, _, _ := bytes.Cut(r.raw, []byte("\r\n\r\n"))
	for _, c := range head {
		if c >= 0x80 {
			t.Fatalf("8-bit byte in header:\n%s", head)
		}
	}
	if !bytes.Contains(head, []byte("=?UTF-8?q?")) && !bytes.Contains(head, []byte("=?utf-8?")) {
		t.Errorf("no encoded-words:\n%s", head)
	}
	subj, err := r.header.Subject()
	if err != nil || subj != in.Subject {
		t.Errorf("Subject = %q, %v", subj, err)
	}
	from, err := r.header.AddressList("From")
	if err != nil || len(from) != 1 || from[0].Name != in.From.Name || from[0].Address != in.From.Address {
		t.Errorf("From = %v, %v", from, err)
	}
	to, err := r.header.AddressList("To")
	if err != nil || len(to) != 1 || to[0].Name != in.To.Name {
		t.Errorf("To = %v, %v", to, err)
	}
	if ch, err := r.header.Text("X-Mailgate-Channel"); err != nil || ch != "Ünïcode channel" {
		t.Errorf("X-Mailgate-Channel = %q, %v", ch, err)
	}
}

// A subject that quotes a raw encoded-word must reach the reader as
// written, not decoded (or refused) by the reader's client.
func TestRenderLiteralEncodedWord(t *testing.T) {
	for _, subject := range []string{
		"Re: =?UTF-8?Q?abc?=",
		"Re: why does my subject say =?x?q?a?= here",
		"=??q??=",
		"Re: Grüße =?utf-8?B?w7w=?=",
	} {
		in := baseReply()
		in.Subject = subject
		in.From.Name = "Support =?UTF-8?Q?x?="
		in.Headers = map[string]string{"X-Mailgate-Channel": subject}
		r := mustRender(t, in)
		if got, err := r.header.Subject(); err != nil || got != subject {
			t.Errorf("Subject %q came back as %q, %v", subject, got, err)
		}
		if got, err := r.header.Text("X-Mailgate-Channel"); err != nil || got != subject {
			t.Errorf("X-Mailgate-Channel %q came back as %q, %v", subject, got, err)
		}
		if from, err := r.header.AddressList("From"); err != nil || len(from) != 1 || from[0].Name != in.From.Name {
			t.Errorf("From name %q came back as %v, %v", in.From.Name, from, err)
		}
	}
}

func TestRenderLongLines(t *testing.T) {
	in := baseReply()
	long := strings.Repeat("a", 5000)
	in.Text = "before\n" + long + "\nafter " + strings.Repeat("ü", 3000)
	in.Subject = "Re: " + strings.Repeat("S", 3000)
	in.From.Name = strings.Repeat("N", 2000)
	in.Headers = map[string]string{"X-Long": strings.Repeat("h", 2000)}
	in.References = []string{strings.Repeat("r", 950) + "@x", "ok@x"}
	r := mustRender(t, in) // checks line lengths
	if !strings.Contains(r.plain, "\n"+long+"\n") {
		t.Errorf("5000-character line not restored by decoding")
	}
	if !strings.Contains(r.html, long) {
		t.Errorf("5000-character line missing from HTML")
	}
	subj, err := r.header.Subject()
	if err != nil || subj != in.Subject {
		t.Errorf("long Subject not restored: %d bytes, %v", len(subj), err)
	}
	if v, err := r.header.Text("X-Long"); err != nil || v != in.Headers["X-Long"] {
		t.Errorf("long X-Long not restored: %v", err)
	}
	for line := range bytes.SplitSeq(r.raw, []byte("\r\n")) {
		if len(line) > 998 {
			t.Fatalf("line of %d octets", len(line))
		}
	}
}

func TestRenderHTML(t *testing.T) {
	in := baseReply()
	in.Text = "Hi <script>alert('x')</script> & \"you\"\n" +
		"see https://example.com/track?a=1&b=<2> and (http://example.org/x_(y)).\n" +
		"javascript:alert(1) ftp://example.com/f https://\n" +
		"\n\n  \n" +
		"second paragraph\r\nline two"
	r := mustRender(t, in)
	for _, want := range []string{
		"<p>Hi &lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &#34;you&#34;<br>\n",
		`see <a href="https://example.com/track?a=1&amp;b=">https://example.com/track?a=1&amp;b=</a>&lt;2&gt; and (<a href="http://example.org/x_(y)">http://example.org/x_(y)</a>).<br>`,
		"javascript:alert(1) ftp://example.com/f https://</p>\n",
		"<p>second paragraph<br>\nline two</p>",
	} {
		if !strings.Contains(r.html, want) {
			t.Errorf("HTML lacks %q:\n%s", want, r.html)
		}
	}
	if strings.Contains(r.html, "<script") || strings.Contains(r.html, `href="javascript`) || strings.Contains(r.html, `href="ftp`) {
		t.Errorf("unsafe HTML:\n%s", r.html)
	}
	if strings.Count(r.html, "<p>") != 2 {
		t.Errorf("want 2 paragraphs:\n%s", r.html)
	}
	if !strings.Contains(r.plain, "Hi <script>alert('x')</script> & \"you\"\n") {
		t.Errorf("plain text altered: %q", r.plain)
	}
}

func TestTrimURL(t *testing.T) {
	for in, want := range map[string]string{
		"https://a.example/x.":       "https://a.example/x",
		"https://a.example/x),":      "https://a.example/x",
		"https://a.example/x_(y)":    "https://a.example/x_(y)",
		"https://a.example/x_(y))":   "https://a.example/x_(y)",
		"https://a.example/?q=1!?":   "https://a.example/?q=1",
		"https://a.example/[a]]":     "https://a.example/[a]",
		"https://a.example/path/to/": "https://a.example/path/to/",
	} {
		if got := trimURL(in); got != want {
			t.Errorf("trimURL(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestRenderFooterQuoteLinks(t *testing.T) {
	in := baseReply()
	in.FooterText = "ACME Corp\nhttps://acme.example"
	in.FooterHTML = `<p class="sig">ACME <b>Corp</b></p>`
	in.Quote = &Quote{
		Date: time.Date(2026, 3, 3, 14, 30, 0, 0, time.UTC),
		Name: "Jane <Doe>",
		Text: "Where is my order?\n\n> older quote\nthanks",
	}
	in.Links = []Link{
		{URL: "https://media.example/v.mp4?sig=a&exp=1", Label: "video <1>.mp4", Reason: "larger than 20 MB"},
		{URL: "https://media.example/doc.pdf"},
		{URL: "javascript:alert(1)", Label: "evil"},
	}
	r := mustRender(t, in)

	wantPlain := "Hello Jane,\n\nyour order has shipped.\n\n" +
		"Files that could not be attached:\n" +
		"- video <1>.mp4: https://media.example/v.mp4?sig=a&exp=1 (larger than 20 MB)\n" +
		"- https://media.example/doc.pdf\n" +
		"- evil: javascript:alert(1)\n\n" +
		"ACME Corp\nhttps://acme.example\n\n" +
		"On Tue, 3 Mar 2026 at 14:30, Jane <Doe> wrote:\n" +
		"> Where is my order?\n>\n>> older quote\n> thanks\n"
	if r.plain != wantPlain {
		t.Errorf("plain body:\n%s\nwant:\n%s", r.plain, wantPlain)
	}
	for _, want := range []string{
		`<li><a href="https://media.example/v.mp4?sig=a&amp;exp=1">video &lt;1&gt;.mp4</a> (larger than 20 MB)</li>`,
		`<li><a href="https://media.example/doc.pdf">https://media.example/doc.pdf</a></li>`,
		`<li>evil: javascript:alert(1)</li>`,
		`<p class="sig">ACME <b>Corp</b></p>`,
		`<p>On Tue, 3 Mar 2026 at 14:30, Jane &lt;Doe&gt; wrote:</p>`,
		`<blockquote type="cite"`,
		"<p>Where is my order?</p>\n<p>&gt; older quote<br>\nthanks</p>\n</blockquote>",
	} {
		if !strings.Contains(r.html, want) {
			t.Errorf("HTML lacks %q:\n%s", want, r.html)
		}
	}
	if strings.Contains(r.html, "ACME Corp<br>") {
		t.Errorf("FooterText used although FooterHTML is set")
	}

	// Without FooterHTML the text footer is escaped into the HTML.
	in.FooterHTML = ""
	in.FooterText = "<ACME>"
	r = mustRender(t, in)
	if !strings.Contains(r.html, `<div class="footer">`+"\n<p>&lt;ACME&gt;</p>") {
		t.Errorf("escaped footer missing:\n%s", r.html)
	}
}

func TestRenderAttachments(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "scan.png")
	png := append([]byte("\x89PNG\r\n\x1a\n"), bytes.Repeat([]byte{0, 1, 2, 0xff}, 300)...)
	if err := os.WriteFile(path, png, 0o600); err != nil {
		t.Fatal(err)
	}
	in := baseReply()
	in.Attachments = []Attachment{
		{Filename: "Rechnung März.pdf", ContentType: "application/pdf", Content: []byte("%PDF-1.4 fake")},
		{Path: path, ContentType: "image/png"},
		{Filename: "../../etc/passwd\r\nX-Evil: 1", ContentType: "text/plain\r\nX-Evil: 2", Content: []byte("x")},
		{Filename: "notes.txt", ContentType: "text/plain; charset=ISO-8859-1; evil=1", Content: []byte("caf\xe9")},
		{Filename: "empty.bin"},
	}
	r := mustRender(t, in)
	if got, want := strings.Join(r.types, ","), "multipart/mixed,multipart/alternative,text/plain,text/html,application/pdf,image/png,application/octet-stream,text/plain,application/octet-stream"; got != want {
		t.Errorf("structure = %s\nwant        %s", got, want)
	}
	want := []renderedFile{
		{"Rechnung März.pdf", "application/pdf", []byte("%PDF-1.4 fake")},
		{"scan.png", "image/png", png},
		{".._.._etc_passwd X-Evil_ 1", "application/octet-stream", []byte("x")},
		{"notes.txt", "text/plain", []byte("caf\xe9")},
		{"empty.bin", "application/octet-stream", nil},
	}
	if len(r.files) != len(want) {
		t.Fatalf("got %d attachments, want %d", len(r.files), len(want))
	}
	for i, w := range want {
		g := r.files[i]
		if g.name != w.name || g.contentType != w.contentType || !bytes.Equal(g.content, w.content) {
			t.Errorf("attachment %d = %q %q (%d bytes), want %q %q (%d bytes)", i, g.name, g.contentType, len(g.content), w.name, w.contentType, len(w.content))
		}
	}
	if bytes.Contains(r.raw, []byte("\r\nX-Evil")) {
		t.Errorf("injected header line:\n%s", r.raw)
	}
	if !bytes.Contains(r.raw, []byte(`Content-Type: text/plain; charset=ISO-8859-1; name="notes.txt"`)) {
		t.Errorf("text attachment charset lost")
	}

	// A missing file is an error, not a silently dropped attachment.
	in.Attachments = []Attachment{{Path: filepath.Join(dir, "missing.pdf")}}
	if _, err := Render(in); err == nil {
		t.Errorf("Render with a missing attachment file succeeded")
	}
}

func TestCleanFilename(t *testing.T) {
	long := strings.Repeat("ü", 300) + ".pdf"
	got := cleanFilename(long)
	if len(got) > maxFilename || !strings.HasSuffix(got, ".pdf") || !strings.HasPrefix(got, "üü") {
		t.Errorf("cleanFilename(long) = %q (%d bytes)", got, len(got))
	}
	for in, want := range map[string]string{
		"":             "attachment",
		"..":           "attachment",
		" a/b\\c.txt ": "a_b_c.txt",
		"x\x00y":       "x y",
	} {
		if got := cleanFilename(in); got != want {
			t.Errorf("cleanFilename(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestRenderHeaderInjection(t *testing.T) {
	in := baseReply()
	in.From.Name = "Support\r\nBcc: victim@example.net"
	in.To.Name = "Jane\nX-Injected: 1"
	in.Subject = "Re: hi\r\nBcc: victim@example.net\r\n\r\nbody"
	in.ThreadTopic = "topic\rX-Injected: 2"
	in.Headers = map[string]string{"X-Mailgate-Channel": "7\r\nBcc: victim@example.net", "X-Other": "a\x00b\x1bc\u2028d"}
	in.Quote = &Quote{Name: "Jane\r\nX-Injected: 3", Text: "hi"}
	raw, err := Render(in)
	if err != nil {
		t.Fatal(err)
	}
	r := parseRendered(t, raw)
	got := strings.Join(headerLines(raw), ",")
	want := "Date,MIME-Version,Message-ID,Subject,Thread-Index,Thread-Topic,X-Mailgate-Channel,X-Other,From,To,Content-Type"
	if got != want {
		t.Errorf("header fields = %s\nwant            %s\n%s", got, want, raw)
	}
	if subj, _ := r.header.Subject(); subj != "Re: hi Bcc: victim@example.net body" {
		t.Errorf("Subject = %q", subj)
	}
	if v := r.header.Get("X-Other"); v != "a b c d" {
		t.Errorf("X-Other = %q", v)
	}
	if v, _ := r.header.Text("X-Mailgate-Channel"); v != "7 Bcc: victim@example.net" {
		t.Errorf("X-Mailgate-Channel = %q", v)
	}
	from, err := r.header.AddressList("From")
	if err != nil || len(from) != 1 || from[0].Name != "Support Bcc: victim@example.net" || from[0].Address != "support@acme.example" {
		t.Errorf("From = %v, %v", from, err)
	}
	if bytes.Contains(raw, []byte("\r\nBcc:")) || bytes.Contains(raw, []byte("\r\nX-Injected")) {
		t.Errorf("injected header line:\n%s", raw)
	}
}

func TestRenderRejects(t *testing.T) {
	tests := []struct {
		name   string
		modify func(*Reply)
	}{
		{"no from", func(r *Reply) { r.From.Address = "" }},
		{"from with CRLF", func(r *Reply) { r.From.Address = "a@b.example\r\nBcc: x@y.example" }},
		{"from with name", func(r *Reply) { r.From.Address = "Eve <a@b.example>" }},
		{"to not an address", func(r *Reply) { r.To.Address = "jane" }},
		{"reply-to injection", func(r *Reply) { r.ReplyTo = "a@b.example\r\nBcc: x@y.example" }},
		{"reply-to two addresses", func(r *Reply) { r.ReplyTo = "a@b.example, c@d.example" }},
		{"no message id", func(r *Reply) { r.MessageID = "" }},
		{"message id with space", func(r *Reply) { r.MessageID = "a b@c" }},
		{"message id with CRLF", func(r *Reply) { r.MessageID = "a@c\r\nBcc: x@y" }},
		{"header name with colon", func(r *Reply) { r.Headers = map[string]string{"X-A: b\r\nBcc": "x"} }},
		{"header name empty", func(r *Reply) { r.Headers = map[string]string{"": "x"} }},
		{"reserved header", func(r *Reply) { r.Headers = map[string]string{"bcc": "x@y.example"} }},
		{"reserved content-type", func(r *Reply) { r.Headers = map[string]string{"Content-Type": "text/html"} }},
		{"cc with CRLF", func(r *Reply) { r.Cc = []mail.Address{{Address: "a@b.example\r\nBcc: x@y.example"}} }},
		{"cc with name in address", func(r *Reply) { r.Cc = []mail.Address{{Address: "Eve <a@b.example>"}} }},
		{"cc two in one", func(r *Reply) { r.Cc = []mail.Address{{Address: "a@b.example, c@d.example"}} }},
		{"cc empty", func(r *Reply) { r.Cc = []mail.Address{{Address: ""}} }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := baseReply()
			tt.modify(r)
			if raw, err := Render(r); err == nil {
				t.Errorf("Render succeeded:\n%s", raw)
			}
		})
	}
	if _, err := Render(nil); err == nil {
		t.Errorf("Render(nil) succeeded")
	}
}

func TestRenderReplyTo(t *testing.T) {
	in := baseReply()
	in.ReplyTo = "Hélp Desk <help@acme.example>"
	r := mustRender(t, in)
	rt, err := r.header.AddressList("Reply-To")
	if err != nil || len(rt) != 1 || rt[0].Name != "Hélp Desk" || rt[0].Address != "help@acme.example" {
		t.Errorf("Reply-To = %v, %v", rt, err)
	}
}

func TestCheckWireFormat(t *testing.T) {
	long := strings.Repeat("x", 998)
	tests := []struct {
		name, in string
		err      string // "" = valid
	}{
		{name: "empty", in: ""},
		{name: "CRLF lines", in: "a\r\nb\r\n"},
		{name: "last line without CRLF", in: "a\r\nb"},
		{name: "998 octets", in: long + "\r\n" + long},
		{name: "bare LF", in: "ab\r\nc\nd", err: "bare LF at offset 5"},
		{name: "LF first", in: "\n", err: "bare LF at offset 0"},
		{name: "bare CR", in: "a\rb", err: "bare CR at offset 1"},
		{name: "CR at the end", in: "a\r", err: "bare CR at offset 1"},
		{name: "CR before CRLF", in: "a\r\r\n", err: "bare CR at offset 1"},
		{name: "999 octets", in: long + "x", err: "line longer than 998 octets at offset 998"},
		{name: "999 octets, then CRLF", in: "a\r\n" + long + "x\r\n", err: "line longer than 998 octets at offset 1001"},
		{name: "CR as octet 999", in: long + "\rx", err: "bare CR at offset 998"},
		{name: "CR after octet 999", in: long + "x\r", err: "line longer than 998 octets at offset 998"},
		{name: "long line before a bare LF", in: long + "xx\n", err: "line longer than 998 octets at offset 998"},
		{name: "bare CR before a bare LF", in: "a\rb\n", err: "bare CR at offset 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := checkWireFormat([]byte(tt.in))
			if got := fmt.Sprint(err); (tt.err == "" && err != nil) || (tt.err != "" && got != tt.err) {
				t.Errorf("checkWireFormat(%.20q) = %v, want %q", tt.in, err, tt.err)
			}
		})
	}
}

// FuzzCheckWireFormat checks checkWireFormat against the rule stated
// another way: the message split at each CRLF leaves pieces without CR or
// LF, none longer than 998 octets.
func FuzzCheckWireFormat(f *testing.F) {
	for _, s := range []string{"", "a\r\nb", "a\nb", "a\rb", "a\r", "\r\r\n", strings.Repeat("x", 999) + "\r\n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		valid := true
		for _, piece := range strings.Split(s, "\r\n") {
			if strings.ContainsAny(piece, "\r\n") || len(piece) > maxLine {
				valid = false
			}
		}
		if err := checkWireFormat([]byte(s)); (err == nil) != valid {
			t.Fatalf("checkWireFormat(%q) = %v, want valid=%v", s, err, valid)
		}
	})
}

// FuzzWriteEscapedHTML checks writeEscapedHTML against html.EscapeString.
func FuzzWriteEscapedHTML(f *testing.F) {
	for _, s := range []string{"", "plain", `<a href="x">O'Brien & co</a>`, "&&&", "Grüße <🙂>"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		var b strings.Builder
		writeEscapedHTML(&b, s)
		if got, want := b.String(), html.EscapeString(s); got != want {
			t.Fatalf("writeEscapedHTML(%q) = %q, html.EscapeString gives %q", s, got, want)
		}
	})
}

func FuzzRender(f *testing.F) {
	f.Add("Jane Doe", "Re: hi", "Hello\n\nhttps://example.com/?a=1&b=2", "Support", "quote\n> x", "file.pdf", "X-Value")
	f.Add("J\r\nBcc: x@y", "S\r\nX: y", "<script>x</script>\r\n.\r\n", "\x00\x01\x7f", "\u2028", "../a\"b", "v\r\nBcc: z")
	f.Add("Jürgen", "Grüße 👋", strings.Repeat("ü", 2000), strings.Repeat("N", 300), "", strings.Repeat("ü", 300), strings.Repeat("h", 1200))
	f.Add("", "", "", "", "", "", "")
	f.Add("=?x?q?a?=", "=?UTF-8?Q?abc?=", "", "=??q??=", "", "=?utf-8?b?w7w=?=", "=?x?q?a?=")
	f.Fuzz(func(t *testing.T, toName, subject, text, fromName, quote, filename, extra string) {
		in := &Reply{
			From:        mail.Address{Name: fromName, Address: "support@acme.example"},
			To:          mail.Address{Name: toName, Address: "jane@example.org"},
			Subject:     subject,
			MessageID:   "fuzz@mailgate.example",
			InReplyTo:   subject,
			References:  []string{text, "a@b"},
			ThreadTopic: subject,
			Date:        time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
			Text:        text,
			FooterText:  quote,
			Quote:       &Quote{Name: toName, Text: quote},
			Attachments: []Attachment{{Filename: filename, ContentType: extra, Content: []byte(text)}},
			Links:       []Link{{URL: text, Label: filename, Reason: extra}},
			Headers:     map[string]string{"X-Fuzz": extra},
		}
		raw, err := Render(in)
		if err != nil {
			t.Fatalf("Render: %v", err)
		}
		if err := checkWireFormat(raw); err != nil {
			t.Fatal(err)
		}
		// Only the fields Render writes, each at most once.
		allowed := map[string]int{"Date": 1, "In-Reply-To": 1, "MIME-Version": 1, "Message-ID": 1, "References": 1,
			"Subject": 1, "Thread-Index": 1, "Thread-Topic": 1, "X-Fuzz": 1, "From": 1, "To": 1, "Content-Type": 1}
		for _, name := range headerLines(raw) {
			allowed[name]--
			if allowed[name] < 0 {
				t.Fatalf("unexpected header field %q:\n%s", name, raw)
			}
		}
		e, err := message.Read(bytes.NewReader(raw))
		if err != nil {
			t.Fatalf("parse: %v\n%s", err, raw)
		}
		if h := (gmmail.Header{Header: e.Header}); true {
			if s, err := h.Subject(); err != nil || s != cleanHeaderText(subject) {
				t.Fatalf("Subject = %q, %v; want %q", s, err, cleanHeaderText(subject))
			}
		}
	})
}

// BenchmarkRender renders an outbox-sized reply (about 3 KB, no
// attachment, as in the outbox's bursts) and one with a 64 KiB PDF.
func BenchmarkRender(b *testing.B) {
	reply := func() *Reply {
		in := baseReply()
		in.Text = strings.Repeat("Hello Jane, your order https://shop.example/o/42 has shipped.\n", 20) + "\n\nRegards"
		in.Quote = &Quote{Name: "Jane", Date: in.Date, Text: strings.Repeat("Where is my order?\n", 10)}
		in.References = []string{"a@example.org", "b@example.org"}
		in.InReplyTo = "b@example.org"
		in.ThreadTopic = "Order 42"
		return in
	}
	tests := []struct {
		name string
		atts []Attachment
	}{
		{name: "reply"},
		{name: "pdf", atts: []Attachment{{Filename: "invoice.pdf", ContentType: "application/pdf", Content: bytes.Repeat([]byte("%PDF"), 16<<10)}}},
	}
	for _, tt := range tests {
		b.Run(tt.name, func(b *testing.B) {
			in := reply()
			in.Attachments = tt.atts
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Render(in); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func TestRenderCc(t *testing.T) {
	long := strings.Repeat("x", 60)
	tests := []struct {
		name string
		cc   []mail.Address
		want []string // "Name <addr>" or "addr", as parsed back
	}{
		{name: "none"},
		{name: "two colleagues", cc: []mail.Address{{Name: "Bob Example", Address: "bob@example.org"}, {Address: "carol@example.net"}},
			want: []string{"Bob Example <bob@example.org>", "carol@example.net"}},
		{name: "names are quoted, encoded and cleaned",
			cc:   []mail.Address{{Name: "Müller, Jürgen", Address: "jm@example.de"}, {Name: "Eve\r\nBcc: victim@example.net", Address: "eve@example.org"}},
			want: []string{"Müller, Jürgen <jm@example.de>", "Eve Bcc: victim@example.net <eve@example.org>"}},
		{name: "a long list is folded", cc: func() []mail.Address {
			var cc []mail.Address
			for i := range 10 {
				cc = append(cc, mail.Address{Name: long, Address: fmt.Sprintf("%s%d@example.org", long, i)})
			}
			return cc
		}(), want: func() []string {
			var w []string
			for i := range 10 {
				w = append(w, fmt.Sprintf("%s <%s%d@example.org>", long, long, i))
			}
			return w
		}()},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := baseReply()
			in.Cc = tc.cc
			r := mustRender(t, in) // checks line lengths
			list, err := r.header.AddressList("Cc")
			if err != nil {
				t.Fatalf("Cc %q: %v", r.header.Get("Cc"), err)
			}
			var got []string
			for _, a := range list {
				if a.Name != "" {
					got = append(got, a.Name+" <"+a.Address+">")
				} else {
					got = append(got, a.Address)
				}
			}
			if strings.Join(got, "|") != strings.Join(tc.want, "|") {
				t.Errorf("Cc = %q, want %q\n%s", got, tc.want, r.raw)
			}
			if bytes.Contains(r.raw, []byte("\r\nBcc:")) {
				t.Errorf("injected header line:\n%s", r.raw)
			}
			if to, err := r.header.AddressList("To"); err != nil || len(to) != 1 || to[0].Address != "jane@example.org" {
				t.Errorf("To = %v, %v", to, err)
			}
		})
	}
}

func TestLinkify(t *testing.T) {
	tests := []struct{ in, want string }{
		{"no link <here> & there", "no link &lt;here&gt; &amp; there"},
		{"HTTPS://A.example/x.", `<a href="HTTPS://A.example/x">HTTPS://A.example/x</a>.`},
		{"a ://b <c>", "a ://b &lt;c&gt;"},
		{"see http://a.example/?a=1&b=2 <x>", `see <a href="http://a.example/?a=1&amp;b=2">http://a.example/?a=1&amp;b=2</a> &lt;x&gt;`},
	}
	for _, tt := range tests {
		var b strings.Builder
		writeLinkified(&b, tt.in)
		if got := b.String(); got != tt.want {
			t.Errorf("writeLinkified(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// TestRenderSizeHint checks that renderSizeHint leaves room for the whole
// message of the replies the outbox sends most (ASCII text, a quote, a
// small attachment), so that Render writes them without growing its buffer.
func TestRenderSizeHint(t *testing.T) {
	tests := []struct {
		name  string
		text  string
		quote string
		atts  []Attachment
	}{
		{name: "one line", text: "Thanks, done."},
		{name: "reply with quote", text: strings.Repeat("Your order https://shop.example/o/42 has shipped.\n", 20), quote: strings.Repeat("Where is my order?\n", 10)},
		{name: "long lines", text: strings.Repeat("word ", 2000)},
		{name: "attachment", text: "See attached.", atts: []Attachment{{Filename: "a.pdf", ContentType: "application/pdf", Content: bytes.Repeat([]byte{0, 1, 2, 255}, 4096)}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := baseReply()
			in.Text = tt.text
			if tt.quote != "" {
				in.Quote = &Quote{Name: "Jane", Date: in.Date, Text: tt.quote}
			}
			in.Attachments = tt.atts
			out, err := Render(in)
			if err != nil {
				t.Fatal(err)
			}
			if hint := renderSizeHint(plainBody(normalized(in)), htmlBody(normalized(in)), in.Attachments); len(out) > hint {
				t.Errorf("rendered %d bytes, hint %d", len(out), hint)
			}
		})
	}
}

// FuzzFindURLs checks that findURLs finds what the regular expression it
// stands for finds.
func FuzzFindURLs(f *testing.F) {
	urlPattern := regexp.MustCompile(`(?i)\bhttps?://[^\s<>"'\x60]+`)
	for _, s := range []string{
		"see https://shop.example/o/42.", "HTTP://A.B/x and http://c", "xhttp://no", "_https://no",
		"http://", "https://\"x", "ahttps://x https://y<z", "http://a\x0bb", "é https://ü.example/ä\xff",
		"http://a://b", "httphttps://x", "(https://x.example/(a))",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, want := findURLs(s), urlPattern.FindAllStringIndex(s, -1)
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("findURLs(%q) = %v, urlPattern finds %v", s, got, want)
		}
	})
}
