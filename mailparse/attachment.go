package mailparse

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"path"
	"strings"
	"unicode"
	"unicode/utf8"
)

// peekSize is how much of a forwarded message is looked at for its header
// (Subject, Message-ID) before it is streamed to the sink; also the most of
// a report part kept for parsing.
const peekSize = 64 << 10

// maxFilename is the longest sanitised file name in bytes.
const maxFilename = 200

// attachment streams one non-body part to the sink and lists it.
func (p *parser) attachment(pi partInfo, dec io.Reader, n node) {
	e := p.email
	if len(e.Attachments) >= p.opts.MaxAttachments+maxListedAttachmentsExtra {
		p.unlisted++
		return // the multipart reader skips the body
	}
	a := &Attachment{
		Index:       len(e.Attachments) + 1,
		ContentType: pi.ct.value,
		ContentID:   strings.TrimSpace(strings.Trim(strings.TrimSpace(pi.header.Get("Content-Id")), "<>")),
		Inline:      pi.disp.value == "inline",
	}
	e.Attachments = append(e.Attachments, a)
	name := pi.filename()

	var capture *bytes.Buffer
	switch a.ContentType {
	case "message/rfc822", "message/global":
		br := bufio.NewReaderSize(dec, peekSize)
		head, _ := br.Peek(peekSize)
		subject, msgID := peekHeader(head)
		if strings.TrimSpace(name) == "" {
			if subject != "" {
				name = strings.NewReplacer("/", "_", `\`, "_").Replace(subject) + ".eml"
			} else {
				name = fmt.Sprintf("forwarded-%d.eml", a.Index)
			}
		}
		if n.report && p.report != nil && p.report.originalID == "" {
			p.report.originalID = msgID
		}
		dec = br
	case "message/delivery-status", "message/global-delivery-status",
		"message/disposition-notification", "message/global-disposition-notification",
		"text/rfc822-headers", "message/global-headers":
		if n.report && p.report != nil {
			capture = &bytes.Buffer{}
		}
	}
	a.Filename = sanitizeFilename(name)
	if a.Filename == "" {
		a.Filename = fmt.Sprintf("attachment-%d%s", a.Index, extensionFor(a.ContentType))
	}

	body := &bodyReader{p: p, r: dec, limit: p.opts.MaxAttachmentSize, hash: sha256.New(), capture: capture}
	switch {
	case a.Index > p.opts.MaxAttachments:
		a.Skipped = fmt.Sprintf("more than %d attachments", p.opts.MaxAttachments)
	default:
		ref, err := p.put(a, body)
		switch {
		case body.over:
			a.Skipped = "larger than " + humanSize(p.opts.MaxAttachmentSize)
		case p.fatal() != nil:
			a.Skipped = "parsing stopped"
		case err != nil:
			a.Skipped = "could not be stored"
			p.problem("%s: storing attachment %d (%q): %v", n.label(), a.Index, truncate(a.Filename, 60), truncateErr(err))
		default:
			a.Ref = ref
			if left := body.drain(); left > 0 {
				p.problem("%s: attachment sink stopped reading %d bytes early", n.label(), left)
			}
		}
	}
	body.drain()
	a.Size = body.total
	a.SHA256 = hex.EncodeToString(body.hash.Sum(nil))
	if body.srcErr != nil && body.srcErr != io.ErrUnexpectedEOF {
		p.problem("%s: attachment truncated: %v", n.label(), truncateErr(body.srcErr))
	}
	if capture != nil {
		p.report.parsePart(a.ContentType, capture.Bytes())
	}
}

// put hands body to the sink, or discards it when there is none.
func (p *parser) put(a *Attachment, body io.Reader) (string, error) {
	if p.opts.Sink == nil {
		_, err := io.Copy(io.Discard, body)
		return "", err
	}
	// The sink gets a copy so it cannot alter what Parse reports.
	meta := *a
	return p.opts.Sink.Put(p.ctx, &meta, body)
}

// bodyReader is what the sink reads: the decoded part, cut off with
// ErrAttachmentTooLarge past the limit, hashed and counted on the way. A
// broken part (truncated multipart, for instance) ends with a clean io.EOF
// so that what was decoded is kept; input failures and context
// cancellation are passed through so that the sink aborts.
type bodyReader struct {
	p       *parser
	r       io.Reader
	limit   int64
	total   int64 // bytes read from r, including drained ones
	hash    hash.Hash
	capture *bytes.Buffer
	over    bool
	eof     bool
	srcErr  error
}

// Read implements io.Reader.
func (b *bodyReader) Read(buf []byte) (int, error) {
	if err := b.p.fatal(); err != nil {
		return 0, err
	}
	if b.over {
		return 0, ErrAttachmentTooLarge
	}
	if b.eof {
		return 0, io.EOF
	}
	if len(buf) == 0 {
		return 0, nil
	}
	if b.total >= b.limit {
		// Is there anything beyond the limit?
		var one [1]byte
		n, err := b.read(one[:])
		if n > 0 {
			b.over = true
			return 0, ErrAttachmentTooLarge
		}
		return 0, err
	}
	if room := b.limit - b.total; int64(len(buf)) > room {
		buf = buf[:room]
	}
	return b.read(buf)
}

// ReadSHA256 returns the SHA-256 digest of the bytes read from the part so
// far and their count, so that a sink (the media library) need not hash
// them again. They are the bytes Read returned, unless Read found the part
// too large (it reads one byte more to know).
func (b *bodyReader) ReadSHA256() (sum [sha256.Size]byte, n int64) {
	b.hash.Sum(sum[:0])
	return sum, b.total
}

// read reads from the decoded part, accounting for the bytes and turning
// part damage into io.EOF.
func (b *bodyReader) read(buf []byte) (int, error) {
	n, err := b.r.Read(buf)
	if n > 0 {
		b.total += int64(n)
		b.hash.Write(buf[:n])
		if b.capture != nil && b.capture.Len() < peekSize {
			k := min(n, peekSize-b.capture.Len())
			b.capture.Write(buf[:k])
		}
	}
	if err != nil && err != io.EOF {
		if fe := b.p.fatal(); fe != nil {
			return n, fe
		}
		b.srcErr = err
		err = io.EOF
	}
	if err == io.EOF {
		b.eof = true
	}
	return n, err
}

// drain reads what the sink left unread into the hash and returns how many
// bytes that was.
func (b *bodyReader) drain() int64 {
	if b.eof || b.p.fatal() != nil {
		return 0 // nothing to read: no buffer to allocate
	}
	start := b.total
	buf := make([]byte, 32<<10)
	for !b.eof && b.p.fatal() == nil {
		if _, err := b.read(buf); err != nil {
			break
		}
	}
	return b.total - start
}

// peekHeader extracts Subject and Message-ID from the start of an embedded
// message.
func peekHeader(head []byte) (subject, msgID string) {
	th, err := readTopHeader(bufio.NewReader(bytes.NewReader(head)))
	if err != nil {
		return "", ""
	}
	subject = cleanHeaderText(th.header.Get("Subject"))
	if ids := msgIDTokens(th.header.Get("Message-Id")); len(ids) > 0 {
		msgID = ids[0]
	}
	return subject, msgID
}

// sanitizeFilename makes a declared file name safe to show and store: the
// directory part (either slash) is dropped, as are control and format
// characters (including bidi overrides), leading dots and surrounding
// blanks; the result is at most maxFilename bytes, cut on a rune boundary
// with the extension kept. It returns "" when nothing is left.
func sanitizeFilename(name string) string {
	name = strings.ToValidUTF8(name, "\uFFFD")
	if i := strings.LastIndexAny(name, `/\`); i >= 0 {
		name = name[i+1:]
	}
	name = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || unicode.Is(unicode.Cf, r) {
			return -1
		}
		if unicode.IsSpace(r) {
			return ' '
		}
		return r
	}, name)
	name = strings.TrimLeft(name, ". ")
	name = strings.TrimRight(name, " ")
	if len(name) <= maxFilename {
		return name
	}
	ext := path.Ext(name)
	if len(ext) > 20 || len(ext) == len(name) || !utf8.ValidString(ext) {
		ext = ""
	}
	return strings.TrimRight(cutUTF8(name[:len(name)-len(ext)], maxFilename-len(ext)), " ") + ext
}

// extensionFor returns the file extension used for fallback names.
func extensionFor(mediaType string) string {
	switch mediaType {
	case "application/pdf":
		return ".pdf"
	case "image/png":
		return ".png"
	case "image/jpeg", "image/jpg", "image/pjpeg":
		return ".jpg"
	case "image/gif":
		return ".gif"
	case "text/plain", "message/delivery-status", "message/disposition-notification", "text/rfc822-headers":
		return ".txt"
	case "text/html":
		return ".html"
	case "message/rfc822", "message/global":
		return ".eml"
	case "application/zip", "application/x-zip-compressed":
		return ".zip"
	case "application/vnd.openxmlformats-officedocument.wordprocessingml.document":
		return ".docx"
	case "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet":
		return ".xlsx"
	case "text/calendar", "application/ics":
		return ".ics"
	}
	if strings.HasPrefix(mediaType, "text/") {
		return ".txt"
	}
	return ".bin"
}

// humanSize formats a byte count with binary units: "25 MiB", "1.5 KiB".
func humanSize(n int64) string {
	units := []struct {
		size int64
		name string
	}{{1 << 30, "GiB"}, {1 << 20, "MiB"}, {1 << 10, "KiB"}}
	for _, u := range units {
		if n >= u.size {
			if n%u.size == 0 {
				return fmt.Sprintf("%d %s", n/u.size, u.name)
			}
			return fmt.Sprintf("%.1f %s", float64(n)/float64(u.size), u.name)
		}
	}
	return fmt.Sprintf("%d bytes", n)
}
