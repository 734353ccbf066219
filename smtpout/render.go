package smtpout

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/mail"
	"net/textproto"
	"os"
	"path/filepath"
	"strings"
	"time"
	"unicode/utf8"

	gomail "github.com/wneessen/go-mail"
)

// Reply is one outgoing message as the caller decided it: addresses,
// threading, the operator's text and what goes with it. Render turns it into
// wire bytes.
type Reply struct {
	// From is the author. The display name is used as given (after control
	// characters are replaced); the address must be a valid addr-spec.
	From mail.Address
	// To is the customer.
	To mail.Address
	// Cc are copied on the reply (the customer's colleagues). Each address
	// must be a valid addr-spec; display names are cleaned like From's.
	// The caller puts them into the envelope too.
	Cc []mail.Address
	// ReplyTo, if not empty, is one address ("Name <a@b>" or "a@b") for the
	// Reply-To header.
	ReplyTo string
	// Subject is used as given; the caller adds "Re: " where it wants one.
	Subject string
	// MessageID is this message's id without angle brackets. Required.
	MessageID string
	// InReplyTo is the id (without angle brackets) of the message replied to.
	InReplyTo string
	// References are the ids of the thread, oldest first, without angle
	// brackets. Invalid ids are dropped; a long list keeps the first id and
	// the 19 newest.
	References []string
	// ThreadTopic is written as the Outlook Thread-Topic header when not
	// empty.
	ThreadTopic string
	// ThreadIndex is a caller-computed base64 Outlook Thread-Index. If it is
	// empty (or not base64) and ThreadTopic is set, a fresh index is
	// generated with NewThreadIndex.
	ThreadIndex string
	// Date is the Date header; the zero time means now.
	Date time.Time
	// Text is the operator's text, paragraphs separated by blank lines.
	Text string
	// FooterText is appended to the plain-text body after a blank line.
	FooterText string
	// FooterHTML is appended to the HTML body as is: it must be trusted
	// template output. If empty, FooterText is escaped and used instead.
	FooterHTML string
	// Quote, if not nil and its text not empty, is the customer's message
	// quoted below the reply.
	Quote *Quote
	// Attachments are attached as files.
	Attachments []Attachment
	// Links are media that could not be attached; they are listed as links
	// in both bodies under LinksHeading. Links without a URL are skipped.
	Links []Link
	// LinksHeading introduces Links; the default is
	// "Files that could not be attached:".
	LinksHeading string
	// Headers are extra header fields such as X-Mailgate-Channel. Names must
	// be letters, digits and '-', and may not replace a header Render writes
	// itself (From, Subject, Message-ID, Content-Type, ...). Empty values are
	// skipped.
	Headers map[string]string
}

// Quote is the customer's earlier message, rendered below the reply as
// "On <date>, <name> wrote:" and the quoted text.
type Quote struct {
	// Date is when the quoted message was written; its location is used for
	// display. The zero time leaves the date out.
	Date time.Time
	// Name is the quoted author's display name or address.
	Name string
	// Text is the quoted message's text.
	Text string
}

// Attachment is a file to attach. Content comes from the file at Path if
// Path is set, otherwise from Content (which may be empty).
type Attachment struct {
	// Filename is the name shown to the recipient; the default is the base
	// name of Path, then "attachment".
	Filename string
	// ContentType is the media type; invalid or missing types become
	// application/octet-stream.
	ContentType string
	// Path is a file to read while rendering.
	Path string
	// Content is the file's content when Path is empty.
	Content []byte
}

// Link is a media file that could not be attached, rendered as a link.
type Link struct {
	// URL is the http or https address of the file.
	URL string
	// Label names the file ("invoice.pdf"); the URL is shown if empty.
	Label string
	// Reason says why it was not attached ("larger than 20 MB"); optional.
	Reason string
}

const (
	// maxDisplayName caps display names, in bytes, so that an address
	// header never needs a line longer than the RFC limit.
	maxDisplayName = 256
	// maxFilename caps attachment names, in bytes: their percent-encoded
	// form must fit one header line.
	maxFilename = 200
	// maxHeaderWord is the longest unbroken ASCII word written as is in a
	// header; longer text is written as RFC 2047 encoded-words so that it
	// can be folded.
	maxHeaderWord = 200
	// maxMsgID caps message ids, in bytes.
	maxMsgID = 900
	// maxReferences is the most ids kept in References.
	maxReferences = 20
	// maxLine is RFC 5322's limit on a line, without CRLF.
	maxLine = 998

	defaultLinksHeading = "Files that could not be attached:"
)

// reservedHeader reports whether key (in canonical form) is a field Render
// writes itself, which Reply.Headers may not set.
func reservedHeader(key string) bool {
	switch key {
	case "Bcc", "Cc", "Content-Description", "Content-Disposition", "Content-Id",
		"Content-Transfer-Encoding", "Content-Type", "Date", "From",
		"In-Reply-To", "Message-Id", "Mime-Version", "Received", "References",
		"Reply-To", "Return-Path", "Sender", "Subject", "Thread-Index",
		"Thread-Topic", "To":
		return true
	}
	return false
}

// Render returns the complete RFC 5322 message for r, with CRLF line
// endings and no line longer than 998 octets.
func Render(r *Reply) ([]byte, error) {
	if r == nil {
		return nil, errors.New("smtpout: render: nil Reply")
	}
	from, err := cleanAddress("From", r.From)
	if err != nil {
		return nil, err
	}
	to, err := cleanAddress("To", r.To)
	if err != nil {
		return nil, err
	}
	cc := make([]*mail.Address, 0, len(r.Cc))
	for _, a := range r.Cc {
		c, err := cleanAddress("Cc", a)
		if err != nil {
			return nil, err
		}
		cc = append(cc, c)
	}
	msgID, ok := cleanMsgID(r.MessageID)
	if !ok {
		return nil, fmt.Errorf("smtpout: render: invalid or missing MessageID %q", r.MessageID)
	}

	m := gomail.NewMsg(gomail.WithNoDefaultUserAgent())
	m.SetAddrHeaderFromMailAddress(gomail.HeaderFrom, from)
	m.SetAddrHeaderFromMailAddress(gomail.HeaderTo, to)
	if len(cc) > 0 {
		// go-mail formats each address with net/mail (quoting or
		// encoding the display name) and folds the list.
		m.SetAddrHeaderFromMailAddress(gomail.HeaderCc, cc...)
	}
	if strings.TrimSpace(r.ReplyTo) != "" {
		rt, err := mail.ParseAddress(cleanHeaderText(r.ReplyTo))
		if err != nil {
			return nil, fmt.Errorf("smtpout: render: invalid ReplyTo %q: %w", r.ReplyTo, err)
		}
		rt, err = cleanAddress("ReplyTo", *rt)
		if err != nil {
			return nil, err
		}
		m.ReplyToMailAddress(rt)
	}
	m.Subject(headerText(r.Subject))
	m.SetMessageIDWithValue(msgID)
	date := r.Date
	if date.IsZero() {
		date = time.Now()
	}
	m.SetDateWithValue(date)
	if id, ok := cleanMsgID(r.InReplyTo); ok {
		m.SetGenHeader(gomail.HeaderInReplyTo, "<"+id+">")
	}
	if refs := referencesValue(r.References); refs != "" {
		m.SetGenHeader(gomail.HeaderReferences, refs)
	}
	if topic := headerText(r.ThreadTopic); topic != "" {
		m.SetGenHeader("Thread-Topic", topic)
	}
	if idx := cleanThreadIndex(r.ThreadIndex); idx != "" {
		m.SetGenHeader("Thread-Index", idx)
	} else if strings.TrimSpace(r.ThreadTopic) != "" {
		m.SetGenHeader("Thread-Index", NewThreadIndex(date))
	}
	if err := setExtraHeaders(m, r.Headers); err != nil {
		return nil, err
	}

	n := normalized(r)
	plain, html := plainBody(n), htmlBody(n)
	m.SetBodyString(gomail.TypeTextPlain, plain)
	m.AddAlternativeString(gomail.TypeTextHTML, html)

	closeFiles, err := attach(m, r.Attachments)
	defer closeFiles()
	if err != nil {
		return nil, err
	}

	var buf bytes.Buffer
	buf.Grow(renderSizeHint(plain, html, r.Attachments))
	if _, err := m.WriteTo(&buf); err != nil {
		return nil, fmt.Errorf("smtpout: render message %q: %w", msgID, err)
	}
	out := buf.Bytes()
	if err := checkWireFormat(out); err != nil {
		return nil, fmt.Errorf("smtpout: render message %q: %w", msgID, err)
	}
	return out, nil
}

// renderSizeHint estimates the size of a rendered message so that Render
// writes it into one buffer instead of growing one from 64 bytes by
// copying: the headers and MIME boundaries, both bodies with room for
// quoted-printable's soft line breaks and escapes, and the attachments in
// base64. It only sizes the buffer; the bytes written do not depend on it.
func renderSizeHint(plain, html string, atts []Attachment) int {
	n := 2048 + (len(plain)+len(html))*9/8
	for _, a := range atts {
		n += len(a.Content)*4/3 + len(a.Content)/38 + 512
	}
	return n
}

// NewThreadIndex returns a fresh Outlook Thread-Index for a conversation
// started at t: 22 bytes (the six high-order bytes of t as a Windows
// FILETIME, then 16 random bytes standing for a GUID) in base64.
func NewThreadIndex(t time.Time) string {
	// FILETIME counts 100 ns intervals since 1601-01-01 UTC.
	const epochDelta = 116444736000000000
	ft := uint64(t.Unix())*10_000_000 + uint64(t.Nanosecond()/100) + epochDelta
	var b [22]byte
	var full [8]byte
	binary.BigEndian.PutUint64(full[:], ft)
	copy(b[:6], full[:6])
	_, _ = rand.Read(b[6:])   // crypto/rand.Read never fails since Go 1.24
	b[12] = b[12]&0x0f | 0x40 // GUID version 4
	b[14] = b[14]&0x3f | 0x80 // GUID variant
	return base64.StdEncoding.EncodeToString(b[:])
}

// cleanAddress validates a's address and cleans its display name.
func cleanAddress(field string, a mail.Address) (*mail.Address, error) {
	addr := strings.TrimSpace(a.Address)
	parsed, err := mail.ParseAddress("<" + addr + ">")
	if err != nil || addr == "" || parsed.Address != addr || len(addr) > 254 || hasControl(addr) {
		if err == nil {
			err = errors.New("not a plain addr-spec")
		}
		return nil, fmt.Errorf("smtpout: render: invalid %s address %q: %w", field, a.Address, err)
	}
	return &mail.Address{Name: truncateUTF8(cleanHeaderText(a.Name), maxDisplayName), Address: addr}, nil
}

// hasControl reports whether s holds an ASCII control character.
func hasControl(s string) bool {
	return strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f })
}

// cleanHeaderText makes s safe as one header line: invalid UTF-8 is
// replaced, every control character (C0, DEL, C1, and the Unicode line and
// paragraph separators) becomes a space, and runs of white space become one
// space.
func cleanHeaderText(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || (r >= 0x7f && r < 0xa0) || r == '\u2028' || r == '\u2029' {
			return ' '
		}
		return r
	}, s)
	return strings.Join(strings.Fields(s), " ")
}

// headerText cleans s and writes it as encoded-words if it holds text that
// readers would decode ("=?", as in a subject that quotes a raw
// encoded-word) or, being ASCII, a word too long to fold. Other non-ASCII
// text is left to go-mail, which encodes it as RFC 2047 Q encoded-words of
// at most 75 characters.
func headerText(s string) string {
	s = cleanHeaderText(s)
	if strings.Contains(s, "=?") {
		return encodeWords(s)
	}
	long := false
	for w := range strings.SplitSeq(s, " ") {
		if len(w) > maxHeaderWord {
			long = true
			break
		}
	}
	if !long || !isASCII(s) {
		return s
	}
	return encodeWords(s)
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// encodeWords writes s as RFC 2047 B encoded-words of at most 75
// characters each, separated by spaces (which decoders drop between
// encoded-words), so that a header holding it can be folded.
func encodeWords(s string) string {
	const maxRaw = 45 // 60 base64 characters plus "=?UTF-8?B?" and "?="
	var b strings.Builder
	for len(s) > 0 {
		n := min(maxRaw, len(s))
		for n < len(s) && n > 0 && !utf8.RuneStart(s[n]) {
			n--
		}
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		b.WriteString("=?UTF-8?B?")
		b.WriteString(base64.StdEncoding.EncodeToString([]byte(s[:n])))
		b.WriteString("?=")
		s = s[n:]
	}
	return b.String()
}

// truncateUTF8 cuts s to at most n bytes without splitting a rune.
func truncateUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return strings.TrimSpace(s[:n])
}

// cleanMsgID strips angle brackets from a message id and reports whether
// what remains can be written as a msg-id.
func cleanMsgID(s string) (string, bool) {
	s = strings.TrimSpace(s)
	s = strings.TrimPrefix(s, "<")
	s = strings.TrimSuffix(s, ">")
	if s == "" || len(s) > maxMsgID {
		return "", false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c >= 0x7f || c == '<' || c == '>' {
			return "", false
		}
	}
	return s, true
}

// referencesValue formats ids as a References value, dropping invalid and
// repeated ids and keeping the first id and the newest ones when there are
// too many.
func referencesValue(ids []string) string {
	var out []string
	seen := make(map[string]bool)
	for _, raw := range ids {
		id, ok := cleanMsgID(raw)
		if !ok || seen[id] {
			continue
		}
		seen[id] = true
		out = append(out, "<"+id+">")
	}
	if len(out) > maxReferences {
		out = append(out[:1], out[len(out)-(maxReferences-1):]...)
	}
	return strings.Join(out, " ")
}

// cleanThreadIndex returns s if it is base64 of at least 22 bytes, else "".
func cleanThreadIndex(s string) string {
	s = strings.TrimSpace(s)
	if s == "" || len(s) > maxMsgID {
		return ""
	}
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil || len(b) < 22 {
		return ""
	}
	return s
}

// setExtraHeaders adds the caller's extra header fields to m.
func setExtraHeaders(m *gomail.Msg, headers map[string]string) error {
	for name, value := range headers {
		if !validHeaderName(name) {
			return fmt.Errorf("smtpout: render: invalid header name %q", name)
		}
		key := textproto.CanonicalMIMEHeaderKey(name)
		if reservedHeader(key) {
			return fmt.Errorf("smtpout: render: header %q is written by Render itself", name)
		}
		if v := headerText(value); v != "" {
			m.SetGenHeader(gomail.Header(key), v)
		}
	}
	return nil
}

// validHeaderName reports whether name is letters, digits and '-',
// starting with a letter or digit.
func validHeaderName(name string) bool {
	if name == "" || len(name) > 76 || name[0] == '-' {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// attach adds the attachments to m. The returned function closes the
// files opened for them and must be called after m is written.
func attach(m *gomail.Msg, atts []Attachment) (func(), error) {
	var files []*os.File
	closeAll := func() {
		for _, f := range files {
			_ = f.Close()
		}
	}
	for i, a := range atts {
		name := a.Filename
		if name == "" && a.Path != "" {
			name = filepath.Base(a.Path)
		}
		name = cleanFilename(name)
		var r io.ReadSeeker
		if a.Path != "" {
			f, err := os.Open(a.Path)
			if err != nil {
				return closeAll, fmt.Errorf("smtpout: render: attachment %d: %w", i, err)
			}
			files = append(files, f)
			r = f
		} else {
			r = bytes.NewReader(a.Content)
		}
		m.AttachReadSeeker(name, r)
		all := m.GetAttachments()
		file := all[len(all)-1]
		ct := attachmentType(a.ContentType)
		// The name parameter of Content-Type is read by old clients, which
		// know RFC 2047 there; the filename of Content-Disposition uses RFC
		// 2231 for non-ASCII names, as the standards say.
		file.Header.Set("Content-Type", ct+`; name="`+mime.QEncoding.Encode("UTF-8", name)+`"`)
		file.Header.Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": name}))
	}
	return closeAll, nil
}

// attachmentType validates a declared media type and keeps only the type
// and, for text, the charset.
func attachmentType(declared string) string {
	const fallback = "application/octet-stream"
	t, params, err := mime.ParseMediaType(declared)
	if err != nil {
		return fallback
	}
	major, minor, ok := strings.Cut(t, "/")
	if !ok || major == "" || minor == "" || major == "multipart" || major == "message" {
		return fallback
	}
	if cs := params["charset"]; major == "text" && cs != "" {
		if f := mime.FormatMediaType(t, map[string]string{"charset": cs}); f != "" {
			return f
		}
	}
	if f := mime.FormatMediaType(t, nil); f != "" {
		return f
	}
	return fallback
}

// cleanFilename makes name safe for a filename parameter: no controls, no
// path separators or characters that file systems refuse, not empty, and
// short enough for one header line.
func cleanFilename(name string) string {
	name = strings.Map(func(r rune) rune {
		switch r {
		case '"', '\\', '/', ':', '*', '?', '<', '>', '|':
			return '_'
		}
		return r
	}, cleanHeaderText(name))
	name = strings.TrimSpace(name)
	if name == "" || name == "." || name == ".." {
		return "attachment"
	}
	if len(name) > maxFilename {
		ext := filepath.Ext(name)
		if len(ext) > 20 || !utf8.ValidString(ext) {
			ext = ""
		}
		name = truncateUTF8(name[:len(name)-len(ext)], maxFilename-len(ext)) + ext
	}
	return name
}

// checkWireFormat verifies that msg uses CRLF line endings only and that no
// line exceeds the RFC 5322 limit (section 2.1.1: 998 octets without the
// CRLF). It names the first offending offset. Lines are found with
// bytes.IndexByte rather than byte by byte: it runs over every rendered
// email.
func checkWireFormat(msg []byte) error {
	for off := 0; off < len(msg); {
		rest := msg[off:]
		line, nl := rest, bytes.IndexByte(rest, '\n')
		bareLF := -1
		if nl >= 0 {
			line = rest[:nl]
			if nl > 0 && rest[nl-1] == '\r' {
				line = rest[:nl-1]
			} else {
				bareLF = off + nl
			}
		}
		// The first of the line's faults, by offset, is the one named.
		if cr := bytes.IndexByte(line, '\r'); cr >= 0 && cr <= maxLine {
			return fmt.Errorf("bare CR at offset %d", off+cr)
		}
		if len(line) > maxLine {
			return fmt.Errorf("line longer than %d octets at offset %d", maxLine, off+maxLine)
		}
		if bareLF >= 0 {
			return fmt.Errorf("bare LF at offset %d", bareLF)
		}
		if nl < 0 {
			return nil
		}
		off += nl + 1
	}
	return nil
}
