// Package mailparse turns one raw RFC 5322 email into what mailgate needs:
// decoded header fields, the body text (or HTML when there is no text),
// attachments streamed to a caller-supplied sink, and a delivery report when
// the email is a bounce.
//
// It is built to survive hostile input: broken MIME boundaries, bad base64
// or quoted-printable, nesting bombs, huge header lines, NUL bytes and
// binary garbage all produce a best-effort Email with Problems rather than
// an error. Every charset golang.org/x/text knows is decoded; unknown ones
// are kept as best-effort UTF-8 and counted.
//
// Parts are streamed: attachment bodies are never held in memory, and text
// parts are capped at Options.MaxTextSize. Format=flowed decoding, reply
// trimming and HTML-to-text conversion are left to the caller; the package
// exposes the raw chosen parts and the flags needed for them.
package mailparse

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/emersion/go-message"
	"github.com/emersion/go-message/mail"
	"github.com/emersion/go-message/textproto"
)

// Defaults applied by Parse to zero (or negative) Options fields.
const (
	// DefaultMaxAttachmentSize is the default Options.MaxAttachmentSize.
	DefaultMaxAttachmentSize = 25 << 20
	// DefaultMaxAttachments is the default Options.MaxAttachments.
	DefaultMaxAttachments = 20
	// DefaultMaxDepth is the default Options.MaxDepth.
	DefaultMaxDepth = 30
	// DefaultMaxTextSize is the default Options.MaxTextSize.
	DefaultMaxTextSize = 2 << 20
)

// maxDepthCap bounds Options.MaxDepth: every byte of a part passes through
// one reader per nesting level, so deep nesting costs quadratic time.
const maxDepthCap = 100

// maxProblems bounds Email.Problems; later problems are summarised.
const maxProblems = 100

// maxListedAttachmentsExtra is how many attachments beyond MaxAttachments
// are still listed (as Skipped), so a message made of a million tiny parts
// cannot make the list huge.
const maxListedAttachmentsExtra = 200

// ErrNoHeader is returned by Parse when the input has no header field at
// all (empty input, binary garbage without a "Name: value" line).
var ErrNoHeader = errors.New("mailparse: no header found")

// ErrAttachmentTooLarge is the error an AttachmentSink's reader returns once
// the attachment exceeds Options.MaxAttachmentSize.
var ErrAttachmentTooLarge = errors.New("mailparse: attachment exceeds size limit")

// Options tunes Parse. The zero value is usable: zero or negative fields
// take the Default* values.
type Options struct {
	// MaxAttachmentSize is the largest decoded attachment handed to Sink
	// in full; larger ones are marked Skipped. Default 25 MiB.
	MaxAttachmentSize int64
	// MaxAttachments is how many attachments are stored; later ones are
	// listed with Skipped set. Default 20.
	MaxAttachments int
	// MaxDepth is the deepest MIME multipart nesting that is followed.
	// Default 30; values above 100 are lowered to 100.
	MaxDepth int
	// MaxTextSize bounds the decoded bytes kept per text part and for Text
	// and HTML as a whole. Default 2 MiB.
	MaxTextSize int64
	// Sink receives attachment bodies. When nil, attachments are counted,
	// measured and hashed, and their content is discarded.
	Sink AttachmentSink
}

// withDefaults returns o with zero fields set to their defaults.
func (o Options) withDefaults() Options {
	if o.MaxAttachmentSize <= 0 {
		o.MaxAttachmentSize = DefaultMaxAttachmentSize
	}
	if o.MaxAttachments <= 0 {
		o.MaxAttachments = DefaultMaxAttachments
	}
	if o.MaxDepth <= 0 {
		o.MaxDepth = DefaultMaxDepth
	}
	if o.MaxDepth > maxDepthCap {
		o.MaxDepth = maxDepthCap
	}
	if o.MaxTextSize <= 0 {
		o.MaxTextSize = DefaultMaxTextSize
	}
	return o
}

// AttachmentSink stores attachment bodies while Parse streams them.
//
// Put is called once per stored attachment with its metadata (Index,
// Filename, ContentType, ContentID, Inline are set; Size and SHA256 are
// filled in after Put returns) and a reader of the decoded bytes. Put must
// read r until io.EOF or an error. When r returns an error (notably
// ErrAttachmentTooLarge, or the context's error) Put must remove whatever it
// stored and return an error; Parse discards the returned ref in that case.
// The body is streamed straight from the decoder: it is never in memory
// whole. r also has a method ReadSHA256() ([32]byte, int64) that returns
// the SHA-256 digest and count of what it returned so far (see
// media.SHA256Reader), so that a sink need not hash the body again.
type AttachmentSink interface {
	Put(ctx context.Context, a *Attachment, r io.Reader) (ref string, err error)
}

// Email is the parsed message.
type Email struct {
	// Header is the top-level header as read.
	Header mail.Header
	// From holds the From addresses; empty when none could be recovered.
	From []*mail.Address
	// FromErr says why From is empty (ErrNoFrom when the field is absent).
	FromErr error
	// FromRaw is the From field value as written.
	FromRaw string
	// Sender is the address of the Sender field ("" if none).
	Sender string
	// ReplyTo is the address of the first Reply-To entry ("" if none).
	ReplyTo string
	// Cc holds the addresses of the Cc field(s), in order; empty when
	// there are none or the field does not parse (then a Problem says
	// so: an address list is never guessed at leniently).
	Cc []*mail.Address
	// Subject is decoded and white-space normalised; "" if none.
	Subject string
	// MessageID is the Message-ID without angle brackets; "" if none or
	// unusable.
	MessageID string
	// InReplyTo lists the identifiers of In-Reply-To, without brackets.
	InReplyTo []string
	// References lists the identifiers of References, without brackets.
	References []string
	// Date is the Date field; zero when absent or unparsable.
	Date time.Time
	// Text is the chosen text/plain body, decoded to UTF-8 with "\n" line
	// endings, NUL bytes and a leading BOM removed. Inline text/plain parts
	// after the first body text (Apple Mail splits text around inline
	// images) are appended in order.
	Text string
	// TextFormat holds the format=flowed and delsp=yes flags of the first
	// text part, for the caller's flowed decoder.
	TextFormat struct{ Flowed, DelSp bool }
	// HTML is the first text/html body part, decoded to UTF-8, normalised
	// like Text. It is set even when Text is, for cid: lookups. Later
	// inline HTML parts are neither kept nor listed as attachments.
	HTML string
	// Attachments lists every non-body part in message order.
	Attachments []*Attachment
	// Report is set when the message is a multipart/report (bounce, DSN,
	// MDN).
	Report *Report
	// CharsetFallbacks counts text parts whose charset was unknown and were
	// kept as best-effort UTF-8.
	CharsetFallbacks int
	// Problems lists non-fatal problems, naming the MIME part ("part 2.1",
	// numbered like IMAP sections) where it helps.
	Problems []string
	// Size is the number of bytes read from the input.
	Size int64
}

// Attachment describes one non-body part.
type Attachment struct {
	// Index is the 1-based position among the message's attachments.
	Index int
	// Filename is sanitised: no directory, no control characters, no
	// leading dots, at most 200 bytes. When the message names none it is
	// "attachment-<Index><ext>", or "<subject>.eml" / "forwarded-<Index>.eml"
	// for a forwarded message.
	Filename string
	// ContentType is the lower-case media type, e.g. "application/pdf".
	ContentType string
	// ContentID is the Content-ID without angle brackets.
	ContentID string
	// Inline is true when the disposition is inline or the HTML body
	// refers to the part with a cid: URL.
	Inline bool
	// Size is the decoded size in bytes (the full size even when Skipped).
	Size int64
	// SHA256 is the hex SHA-256 of the decoded bytes, computed while
	// streaming.
	SHA256 string
	// Ref is what the sink returned; "" when not stored.
	Ref string
	// Skipped says why the attachment was not stored, "" otherwise.
	Skipped string
}

// Report is what a multipart/report says about an earlier message, for
// matching bounces and read receipts to what mailgate sent.
type Report struct {
	// ReportType is the report-type parameter, e.g. "delivery-status".
	ReportType string
	// OriginalMessageID is the Message-ID (without brackets) of the
	// message the report is about, from the returned headers or an MDN's
	// Original-Message-ID.
	OriginalMessageID string
	// Action is the first recipient's Action ("failed", "delayed", ...).
	Action string
	// Status is the first recipient's status code, e.g. "5.1.1".
	Status string
	// DiagnosticCode is the Diagnostic-Code text without its type prefix.
	DiagnosticCode string
	// FinalRecipient is the Final-Recipient address without its type
	// prefix (Original-Recipient when Final-Recipient is absent).
	FinalRecipient string
}

// Parse reads one raw email from r and returns what it could make of it.
// It fails only when no header field can be read at all (ErrNoHeader), when
// a header block is larger than MaxHeaderBytes (ErrHeaderTooLarge), when
// reading r fails, or when ctx is done; everything else becomes a Problem.
// It never panics: a panic inside is returned as an error naming the
// Message-ID when known.
func Parse(ctx context.Context, r io.Reader, opts Options) (email *Email, err error) {
	p := &parser{ctx: ctx, opts: opts.withDefaults(), email: &Email{}, srcLen: math.MaxInt64}
	p.src = &sourceReader{ctx: ctx, r: r}
	if l, ok := r.(interface{ Len() int }); ok {
		p.srcLen = int64(l.Len()) // bytes.Reader, strings.Reader, bytes.Buffer
	}
	defer func() {
		if v := recover(); v != nil {
			id := "(unknown)"
			if p.email.MessageID != "" {
				id = "<" + p.email.MessageID + ">"
			}
			email = nil
			err = fmt.Errorf("mailparse: internal error parsing message %s: %v", id, v)
		}
	}()
	if err := p.parse(); err != nil {
		return nil, err
	}
	return p.email, nil
}

// sourceReader counts the input, checks the context and remembers the
// first real read error so that it can be told apart from MIME damage.
type sourceReader struct {
	ctx context.Context
	r   io.Reader
	n   int64
	err error
}

// Read implements io.Reader.
func (s *sourceReader) Read(b []byte) (int, error) {
	if s.err != nil {
		return 0, s.err
	}
	if err := s.ctx.Err(); err != nil {
		s.err = err
		return 0, err
	}
	n, err := s.r.Read(b)
	s.n += int64(n)
	if err != nil && err != io.EOF {
		s.err = err
	}
	return n, err
}

// parser holds the state of one Parse call.
type parser struct {
	ctx      context.Context
	opts     Options
	email    *Email
	src      *sourceReader
	dropped  int  // problems beyond maxProblems
	deepSeen bool // the MaxDepth problem was recorded
	htmlSeen bool
	textCut  bool
	unlisted int // attachments beyond maxListedAttachments
	report   *reportState
	limitErr error // a limit that fails the whole parse (ErrHeaderTooLarge)
	srcLen   int64 // the size of the input when known (no part is larger), else MaxInt64
}

// fatal returns the error that must stop parsing: the input failed or the
// context is done.
func (p *parser) fatal() error {
	if p.limitErr != nil {
		return p.limitErr
	}
	if p.src.err != nil {
		return p.src.err
	}
	return p.ctx.Err()
}

// problem records a non-fatal problem.
func (p *parser) problem(format string, args ...any) {
	if len(p.email.Problems) >= maxProblems {
		p.dropped++
		return
	}
	p.email.Problems = append(p.email.Problems, fmt.Sprintf(format, args...))
}

// parse does the work of Parse.
func (p *parser) parse() error {
	br := bufio.NewReaderSize(p.src, 4096)
	th, err := readTopHeader(br)
	if err != nil {
		if fe := p.fatal(); fe != nil {
			return fmt.Errorf("mailparse: read header: %w", fe)
		}
		if errors.Is(err, ErrNoHeader) {
			return err
		}
		return fmt.Errorf("mailparse: read header: %w", err)
	}
	for _, pr := range th.problems {
		p.problem("%s", pr)
	}
	p.headerFields(th.header)

	var body io.Reader = br
	if len(th.pushback) > 0 {
		body = io.MultiReader(bytes.NewReader(th.pushback), br)
	}
	p.walk(th.header, body, node{})
	if fe := p.fatal(); fe != nil {
		return fmt.Errorf("mailparse: message %s: %w", p.idForErr(), fe)
	}
	p.finish()
	// Count what is left (epilogue, skipped parts) so Size is the whole
	// message.
	if _, err := io.Copy(io.Discard, br); err != nil {
		return fmt.Errorf("mailparse: message %s: %w", p.idForErr(), err)
	}
	p.email.Size = p.src.n
	return nil
}

// idForErr names the message in errors.
func (p *parser) idForErr() string {
	if p.email.MessageID != "" {
		return "<" + p.email.MessageID + ">"
	}
	return "(no Message-ID)"
}

// headerFields fills the Email fields that come from the top header.
func (p *parser) headerFields(h textproto.Header) {
	e := p.email
	e.Header = mail.Header{Header: message.Header{Header: h}}
	mh := &e.Header

	var prob string
	e.From, e.FromRaw, e.FromErr, prob = parseFrom(mh)
	if prob != "" {
		p.problem("%s", prob)
	}
	if e.Sender, prob = firstAddress(mh, "Sender"); prob != "" {
		p.problem("%s", prob)
	}
	if e.ReplyTo, prob = firstAddress(mh, "Reply-To"); prob != "" {
		p.problem("%s", prob)
	}
	if e.Cc, prob = addressList(mh, "Cc"); prob != "" {
		p.problem("%s", prob)
	}
	e.Subject = cleanHeaderText(h.Get("Subject"))
	id, ok := messageIDOf(mh)
	if !ok {
		p.problem("Message-ID %q is not usable", truncate(h.Get("Message-Id"), 80))
	}
	e.MessageID = id
	e.InReplyTo = msgIDTokens(h.Get("In-Reply-To"))
	e.References = msgIDTokens(strings.Join(h.Values("References"), " "))
	if v := h.Get("Date"); strings.TrimSpace(v) != "" {
		d, err := parseDate(v) // mh.Date(), faster
		if err != nil {
			p.problem("Date %q: %v", truncate(v, 80), err)
		} else {
			e.Date = d
		}
	}
}

// node is where a part sits in the MIME tree.
type node struct {
	section string     // IMAP-style section number, "" for the top
	depth   int        // multipart nesting depth
	parent  string     // subtype of the enclosing multipart, "" at top
	alts    []altFrame // enclosing multipart/alternative parts
	report  bool       // inside a multipart/report
}

// label names the part in problems.
func (n node) label() string {
	if n.section == "" {
		return "part 1"
	}
	return "part " + n.section
}

// multipartLabel names a multipart in problems: the top one is the
// message itself, which has no section number.
func (n node) multipartLabel() string {
	if n.section == "" {
		return "message"
	}
	return "part " + n.section
}

// child returns the node of the i-th (1-based) sub-part of n, a multipart
// with the given subtype.
func (n node) child(i int, subtype string, alt *altState, report bool) node {
	c := node{depth: n.depth + 1, parent: subtype, report: n.report || report}
	if n.section == "" {
		c.section = strconv.Itoa(i)
	} else {
		c.section = n.section + "." + strconv.Itoa(i)
	}
	c.alts = append(c.alts, n.alts...)
	if alt != nil {
		c.alts = append(c.alts, altFrame{st: alt, branch: i})
	}
	return c
}

// altState remembers which branch of a multipart/alternative supplied the
// body text (-1: none yet).
type altState struct{ branch int }

// altFrame places a part inside one branch of an alternative.
type altFrame struct {
	st     *altState
	branch int
}

// partInfo is the parsed MIME header of one part.
type partInfo struct {
	header textproto.Header
	ct     headerValue // Content-Type
	disp   headerValue // Content-Disposition
	cte    string      // Content-Transfer-Encoding, lower-case
}

// filename returns the declared file name, Content-Disposition first.
func (pi partInfo) filename() string {
	if f := pi.disp.param("filename"); strings.TrimSpace(f) != "" {
		return f
	}
	return pi.ct.param("name")
}

// isAttachmentDisposition reports an explicit attachment disposition (an
// unknown disposition counts as attachment, as RFC 2183 says).
func (pi partInfo) isAttachmentDisposition() bool {
	return pi.disp.value != "" && pi.disp.value != "inline"
}

// partInfoOf parses the MIME fields of a part header.
func (p *parser) partInfoOf(h textproto.Header, n node) partInfo {
	pi := partInfo{header: h}
	raw := h.Get("Content-Type")
	var prob string
	if strings.TrimSpace(raw) == "" {
		pi.ct.value = "text/plain"
		if n.parent == "digest" {
			pi.ct.value = "message/rfc822"
		}
		pi.ct.params = map[string]string{}
	} else {
		pi.ct, prob = parseHeaderValue(raw)
		if prob != "" {
			p.problem("%s: Content-Type %q: %s", n.label(), truncate(raw, 80), prob)
		}
		if !validMediaType(pi.ct.value) {
			p.problem("%s: invalid Content-Type %q, read as text/plain", n.label(), truncate(raw, 80))
			pi.ct.value = "text/plain"
		}
	}
	if raw := h.Get("Content-Disposition"); strings.TrimSpace(raw) != "" {
		pi.disp, prob = parseHeaderValue(raw)
		if prob != "" {
			p.problem("%s: Content-Disposition %q: %s", n.label(), truncate(raw, 80), prob)
		}
	} else {
		pi.disp.params = map[string]string{}
	}
	pi.cte = strings.ToLower(strings.Trim(strings.TrimSpace(h.Get("Content-Transfer-Encoding")), `"`))
	return pi
}

// validMediaType accepts "type/subtype" made of token characters.
func validMediaType(v string) bool {
	t, sub, ok := strings.Cut(v, "/")
	if !ok || t == "" || sub == "" {
		return false
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`()<>@,;:\"[]?=`, c) >= 0 {
			return false
		}
	}
	return true
}

// walk handles one part and, for a multipart, its sub-parts.
func (p *parser) walk(h textproto.Header, body io.Reader, n node) {
	if p.fatal() != nil {
		return
	}
	pi := p.partInfoOf(h, n)
	if strings.HasPrefix(pi.ct.value, "multipart/") {
		p.multipart(pi, body, n)
		return
	}
	p.leaf(pi, body, n)
}

// prefixCapture keeps the first bytes read through it until stopped, so a
// "multipart" without any boundary can still be read as text.
type prefixCapture struct {
	r       io.Reader
	buf     []byte
	max     int64
	stopped bool
}

// Read implements io.Reader.
func (c *prefixCapture) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	if !c.stopped && n > 0 {
		room := c.max - int64(len(c.buf))
		if room > 0 {
			k := int64(n)
			if k > room {
				k = room
			}
			c.buf = append(c.buf, b[:k]...)
		}
	}
	return n, err
}

// stop ends capturing and frees the buffer.
func (c *prefixCapture) stop() { c.stopped, c.buf = true, nil }

// multipart walks the sub-parts of a multipart part.
func (p *parser) multipart(pi partInfo, body io.Reader, n node) {
	subtype := strings.TrimPrefix(pi.ct.value, "multipart/")
	if n.depth >= p.opts.MaxDepth {
		if !p.deepSeen {
			p.deepSeen = true
			p.problem("%s: MIME nesting deeper than %d levels; the rest of it is skipped", n.multipartLabel(), p.opts.MaxDepth)
		}
		return
	}
	boundary := pi.ct.param("boundary")
	if boundary == "" {
		p.problem("%s: %s without boundary, read as text/plain", n.multipartLabel(), pi.ct.value)
		pi.ct.value = "text/plain"
		p.leaf(pi, body, n)
		return
	}
	var alt *altState
	if subtype == "alternative" {
		alt = &altState{branch: -1}
	}
	isReport := false
	if subtype == "report" && p.email.Report == nil {
		p.email.Report = &Report{ReportType: strings.ToLower(pi.ct.param("report-type"))}
		p.report = &reportState{}
		isReport = true
	}
	guard := newPartHeaderGuard(body, boundary, func(err error) { p.limitErr = err })
	capture := &prefixCapture{r: guard, max: p.opts.MaxTextSize}
	mr := textproto.NewMultipartReader(capture, boundary)
	for i := 1; ; i++ {
		if p.fatal() != nil {
			return
		}
		part, err := mr.NextPart()
		if err == io.EOF {
			return
		}
		if err != nil {
			if p.fatal() != nil {
				return
			}
			atEOF := strings.HasSuffix(err.Error(), "EOF")
			if i == 1 && atEOF {
				p.problem("%s: %s has no part delimited by its boundary; read as text/plain", n.multipartLabel(), pi.ct.value)
				text := partInfo{header: pi.header, ct: headerValue{value: "text/plain", params: pi.ct.params}, disp: pi.disp}
				p.leaf(text, bytes.NewReader(capture.buf), n)
				capture.stop()
				return
			}
			capture.stop()
			if atEOF {
				p.problem("%s: %s ends without its closing boundary", n.multipartLabel(), pi.ct.value)
			} else {
				p.problem("%s: %s is malformed at its part %d, rest skipped: %v", n.multipartLabel(), pi.ct.value, i, truncateErr(err))
			}
			return
		}
		if i == 1 {
			capture.stop()
		}
		p.walk(part.Header, part, n.child(i, subtype, alt, isReport))
	}
}

// truncateErr shortens an error message that may quote input.
func truncateErr(err error) string { return truncate(err.Error(), 120) }

// leaf handles a non-multipart part: body text, body HTML or attachment.
func (p *parser) leaf(pi partInfo, body io.Reader, n node) {
	dec, report := p.transferDecoder(pi.cte, body, n)
	defer report()
	switch {
	case pi.ct.value == "text/plain" && p.isBodyText(pi):
		if !p.takeText(n) {
			return // another representation of text already chosen
		}
		p.bodyText(pi, dec, n)
	case pi.ct.value == "text/html" && p.isBodyText(pi):
		if p.htmlSeen {
			// A later inline HTML part is another rendering or a fragment
			// of the body (Apple Mail), not a file the sender attached.
			return
		}
		p.htmlSeen = true
		b := p.readText(dec, n)
		p.email.HTML = p.decodeText(pi, b, n)
	default:
		p.attachment(pi, dec, n)
	}
}

// isBodyText reports whether a text/plain or text/html part is body rather
// than an attached file: not disposition attachment, and not a named part
// without any disposition.
func (p *parser) isBodyText(pi partInfo) bool {
	if pi.isAttachmentDisposition() {
		return false
	}
	if pi.disp.value == "" && strings.TrimSpace(pi.filename()) != "" {
		return false
	}
	return true
}

// takeText decides whether a body text part contributes to Text: inside a
// multipart/alternative only the branch that supplied the first text does.
func (p *parser) takeText(n node) bool {
	for _, f := range n.alts {
		if f.st.branch != -1 && f.st.branch != f.branch {
			return false
		}
	}
	for _, f := range n.alts {
		f.st.branch = f.branch
	}
	return true
}

// bodyText reads a text/plain body part and appends it to Text.
func (p *parser) bodyText(pi partInfo, dec io.Reader, n node) {
	e := p.email
	first := e.Text == "" && !p.textCut
	b := p.readText(dec, n)
	s := p.decodeText(pi, b, n)
	if first {
		e.TextFormat.Flowed = strings.EqualFold(pi.ct.param("format"), "flowed")
		e.TextFormat.DelSp = strings.EqualFold(pi.ct.param("delsp"), "yes")
	}
	if e.Text != "" && s != "" && !strings.HasSuffix(e.Text, "\n") {
		e.Text += "\n"
	}
	room := p.opts.MaxTextSize - int64(len(e.Text))
	if int64(len(s)) > room {
		if !p.textCut {
			p.problem("%s: body text longer than %s in total; rest dropped", n.label(), humanSize(p.opts.MaxTextSize))
		}
		p.textCut = true
		s = cutUTF8(s, int(max(room, 0)))
	}
	e.Text += s
}

// readText reads a text part, keeping at most MaxTextSize bytes.
func (p *parser) readText(r io.Reader, n node) []byte {
	hint := min(p.srcLen, p.opts.MaxTextSize+1, maxTextHint)
	if n.depth > 0 {
		hint = min(hint, maxPartTextHint)
	}
	b, err := readAllHint(io.LimitReader(r, p.opts.MaxTextSize+1), hint)
	if err != nil && p.fatal() == nil && err != io.ErrUnexpectedEOF {
		p.problem("%s: text truncated: %v", n.label(), truncateErr(err))
	}
	if int64(len(b)) > p.opts.MaxTextSize {
		p.problem("%s: text longer than %s; rest dropped", n.label(), humanSize(p.opts.MaxTextSize))
		return trimPartialRune(b[:p.opts.MaxTextSize])
	}
	return b
}

// maxTextHint bounds the buffer readText allocates up front: the size of
// the whole input, when it is known, bounds a text part's, but an email
// with a large attachment has a small text.
const maxTextHint = 64 << 10

// maxPartTextHint bounds it further for a text part of a multipart, whose
// size the input's does not tell: mostly a short text beside attachments
// that make up the input's size. A 64 KiB buffer for the 11 KB text
// beside a 500 KB PDF was too large for the text to keep it
// (ownedString), so the text cost 75 KB; a longer text grows the buffer.
const maxPartTextHint = 16 << 10

// readAllHint is io.ReadAll with a first buffer of hint bytes (at least
// 512) instead of 512 grown by copying.
func readAllHint(r io.Reader, hint int64) ([]byte, error) {
	b := make([]byte, 0, max(hint, 512))
	for {
		n, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err != nil {
			if err == io.EOF {
				err = nil
			}
			return b, err
		}
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
	}
}

// decodeText converts a text part to normalised UTF-8 and records charset
// problems. It may overwrite b.
func (p *parser) decodeText(pi partInfo, b []byte, n node) string {
	cs := pi.ct.param("charset")
	if keptAsIs(cs, b) {
		// Most text: normalised in place and copied once, instead of
		// copied by decodeCharset and again by normaliseText.
		s, nul := normaliseBytes(b)
		if nul {
			p.problem("%s: NUL bytes removed", n.label())
		}
		return cutUTF8(s, int(p.opts.MaxTextSize))
	}
	res := decodeCharset(cs, b)
	switch {
	case res.unknown:
		p.email.CharsetFallbacks++
		p.problem("%s: unknown charset %q; kept as UTF-8", n.label(), truncate(cs, 40))
	case res.repaired:
		if cs == "" {
			cs = "none"
		}
		p.problem("%s: text does not match its charset (%s); decoded best-effort", n.label(), truncate(cs, 40))
	}
	s, nul := normaliseText(res.text)
	if nul {
		p.problem("%s: NUL bytes removed", n.label())
	}
	return cutUTF8(s, int(p.opts.MaxTextSize))
}

// normaliseText strips a leading BOM and NUL bytes and turns CRLF and lone
// CR into LF.
func normaliseText(s string) (string, bool) {
	s = strings.TrimPrefix(s, "\uFEFF")
	nul := strings.IndexByte(s, 0) >= 0
	if nul {
		s = strings.ReplaceAll(s, "\x00", "")
	}
	if strings.IndexByte(s, '\r') >= 0 {
		s = strings.ReplaceAll(s, "\r\n", "\n")
		s = strings.ReplaceAll(s, "\r", "\n")
	}
	return s, nul
}

// normaliseBytes is normaliseText(string(b)) in one pass and one copy; it
// overwrites b.
func normaliseBytes(b []byte) (string, bool) {
	b = bytes.TrimPrefix(b, []byte("\uFEFF"))
	nextNul, nextCR := bytes.IndexByte(b, 0), bytes.IndexByte(b, '\r')
	if nextNul < 0 && nextCR < 0 {
		return string(b), false
	}
	// The bytes between a NUL or CR and the next are moved as one block
	// (bytes.IndexByte and copy run many bytes a step), not one by one.
	nul, cr := false, false // cr: the last byte kept was a CR, now LF
	w, i := 0, 0
	for i < len(b) {
		if nextNul >= 0 && nextNul < i {
			nextNul = indexFrom(b, i, 0)
		}
		if nextCR >= 0 && nextCR < i {
			nextCR = indexFrom(b, i, '\r')
		}
		end := len(b)
		if nextNul >= 0 {
			end = nextNul
		}
		if nextCR >= 0 && nextCR < end {
			end = nextCR
		}
		if i < end {
			if cr && b[i] == '\n' {
				i++ // the LF of a CRLF
			}
			cr = false
			w += copy(b[w:], b[i:end])
			i = end
			continue
		}
		if b[i] == 0 {
			nul = true // NULs go first: CR NUL LF is a CRLF
		} else {
			b[w] = '\n'
			w++
			cr = true
		}
		i++
	}
	return string(b[:w]), nul
}

// indexFrom returns the index in b of the first c at or after i, or -1.
func indexFrom(b []byte, i int, c byte) int {
	if j := bytes.IndexByte(b[i:], c); j >= 0 {
		return i + j
	}
	return -1
}

// trimPartialRune drops an incomplete UTF-8 sequence at the end of b, left
// by cutting text at a byte limit.
func trimPartialRune(b []byte) []byte {
	for i := len(b) - 1; i >= 0 && i >= len(b)-utf8.UTFMax; i-- {
		if utf8.RuneStart(b[i]) {
			if b[i] >= utf8.RuneSelf && !utf8.FullRune(b[i:]) {
				return b[:i]
			}
			break
		}
	}
	return b
}

// cutUTF8 shortens s to at most n bytes on a rune boundary.
func cutUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !isRuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// transferDecoder wraps body in the decoder for its Content-Transfer-
// Encoding. The returned func records decoding problems; call it once the
// body has been consumed.
func (p *parser) transferDecoder(cte string, body io.Reader, n node) (io.Reader, func()) {
	switch cte {
	case "base64":
		d := newBase64Reader(body)
		return d, func() {
			if bad := d.badBytes(); bad > 0 {
				p.problem("%s: bad base64 (%d bytes skipped)", n.label(), bad)
			}
		}
	case "quoted-printable":
		d := newQPReader(body)
		return d, func() {
			if bad := d.badBytes(); bad > 0 {
				p.problem("%s: bad quoted-printable (%d malformed escapes kept literally)", n.label(), bad)
			}
		}
	case "", "7bit", "8bit", "binary", "7-bit", "8-bit":
		return body, func() {}
	}
	p.problem("%s: unknown Content-Transfer-Encoding %q; body kept as is", n.label(), truncate(cte, 40))
	return body, func() {}
}

// finish derives what needs the whole message: cid references and the
// delivery report.
func (p *parser) finish() {
	e := p.email
	lower := ""
	for _, a := range e.Attachments {
		if a.ContentID == "" || e.HTML == "" {
			continue
		}
		if lower == "" {
			lower = strings.ToLower(e.HTML)
		}
		if strings.Contains(lower, "cid:"+strings.ToLower(a.ContentID)) {
			a.Inline = true
		}
	}
	if p.report != nil && e.Report != nil {
		p.report.fill(e.Report)
	}
	if p.unlisted > 0 {
		p.problem("%d further attachments not listed", p.unlisted)
	}
	if p.dropped > 0 {
		e.Problems = append(e.Problems, fmt.Sprintf("%d further problems not listed", p.dropped))
	}
}
