package bridge

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"mailgate/inbound"
	"mailgate/mailparse"
	"mailgate/media"
	"mailgate/verify"
)

// benchIndex is a media.Index in memory: the benchmark measures preparing
// an email, not the store.
type benchIndex struct {
	mu   sync.Mutex
	recs map[string]media.Record
}

func (x *benchIndex) PutMedia(_ context.Context, r *media.Record) error {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.recs[r.ID] = *r
	return nil
}

func (x *benchIndex) Media(_ context.Context, id string) (*media.Record, error) {
	x.mu.Lock()
	defer x.mu.Unlock()
	r, ok := x.recs[id]
	if !ok {
		return nil, fmt.Errorf("media %q: %w", id, media.ErrNotFound)
	}
	return &r, nil
}

func (x *benchIndex) ExpiredMedia(context.Context, time.Time) ([]*media.Record, error) {
	return nil, nil
}

func (x *benchIndex) DeleteMedia(context.Context, []string) error { return nil }

func (x *benchIndex) MediaRefs(_ context.Context, sum string) (int, error) {
	x.mu.Lock()
	defer x.mu.Unlock()
	n := 0
	for _, r := range x.recs {
		if r.SHA256 == sum {
			n++
		}
	}
	return n, nil
}

type benchResolver struct{}

func (benchResolver) LookupTXT(context.Context, string) ([]string, error) { return nil, nil }

// benchWords fill the bodies, as in bench/mails.go.
var benchWords = strings.Fields(`order invoice delivery parcel account password
	refund upgrade plan subscription printer router cable screen battery
	please could you check again today tomorrow morning thanks regards
	the a my our your and but with without still since after before when
	works broken missing late twice again number reference customer`)

// backlogMixMail renders mail i of the backlog bench's mix (bench/mails.go,
// bench/backlog.go): a plain-text body of 2-20 KB, every tenth with a
// 500 KB PDF in base64. It returns the offset of the attachment's first
// base64 line (0 without one).
func backlogMixMail(i int) (raw []byte, attachAt int) {
	r := rand.New(rand.NewPCG(uint64(i)+1, 0x6d61696c67617465))
	var b bytes.Buffer
	h := func(k, v string) { b.WriteString(k + ": " + v + "\r\n") }
	h("Authentication-Results", "mx.example.test; dmarc=pass header.from=client.example.org")
	h("From", fmt.Sprintf("Customer <c%d@client.example.org>", i))
	h("To", "<support@example.com>")
	h("Subject", fmt.Sprintf("Question bm:bl-%d", i))
	h("Date", "Fri, 04 Dec 2026 14:00:00 +0000")
	h("Message-ID", fmt.Sprintf("<%016x.bl-%d@client.example.org>", i+1, i))
	h("MIME-Version", "1.0")
	var body bytes.Buffer
	body.WriteString(fmt.Sprintf("Hello support, [bm:bl-%d]\r\n\r\n", i))
	size, line := 2000+(i*7919)%18000, 0
	for body.Len() < size {
		w := benchWords[r.IntN(len(benchWords))]
		if line+len(w) > 72 {
			body.WriteString("\r\n")
			line = 0
		}
		body.WriteString(w + " ")
		line += len(w) + 1
	}
	body.WriteString("\r\n\r\nBest regards\r\nA customer\r\n")
	if i%10 != 9 {
		h("Content-Type", "text/plain; charset=utf-8")
		h("Content-Transfer-Encoding", "8bit")
		b.WriteString("\r\n")
		b.Write(body.Bytes())
		return b.Bytes(), 0
	}
	boundary := fmt.Sprintf("bm-%016x", i+1)
	h("Content-Type", `multipart/mixed; boundary="`+boundary+`"`)
	b.WriteString("\r\nThis is a multi-part message in MIME format.\r\n--" + boundary + "\r\n")
	b.WriteString("Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n")
	b.Write(body.Bytes())
	b.WriteString("--" + boundary + "\r\nContent-Type: application/pdf; name=\"scan.pdf\"\r\n")
	b.WriteString("Content-Disposition: attachment; filename=\"scan.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\n")
	noise := make([]byte, 500<<10)
	for k := range noise {
		noise[k] = byte(r.Uint32())
	}
	pdf := append([]byte("%PDF-1.4\n%\xe2\xe3\xcf\xd3\n4 0 obj << /Length 512000 >> stream\n"), noise...)
	pdf = append(pdf, "\nendstream endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"...)
	enc := base64.StdEncoding.EncodeToString(pdf)
	attachAt = b.Len()
	for len(enc) > 76 {
		b.WriteString(enc[:76] + "\r\n")
		enc = enc[76:]
	}
	b.WriteString(enc + "\r\n--" + boundary + "--\r\n")
	return b.Bytes(), attachAt
}

// BenchmarkAnalyzeBacklogMix analyzes the backlog bench's mail mix (90%
// plain text of 2-20 KB, every tenth with a 500 KB PDF) with the daemon's
// media sink over a media library on disk; one op is one email. Each PDF
// differs from the ones stored before, as in the backlog, so every one is
// written and placed.
func BenchmarkAnalyzeBacklogMix(b *testing.B) {
	v, err := verify.New(verify.Options{TrustedAuthservIDs: []string{"mx.example.test"}, Resolver: benchResolver{}})
	if err != nil {
		b.Fatal(err)
	}
	lib, err := media.New(media.Options{
		Dir:       b.TempDir(),
		Key:       bytes.Repeat([]byte("k"), 32),
		PublicURL: "https://gw.example.com",
		Index:     &benchIndex{recs: make(map[string]media.Record)},
	})
	if err != nil {
		b.Fatal(err)
	}
	a, err := inbound.NewAnalyzer(inbound.AnalyzerOptions{
		Verifier: v,
		Parse:    mailparse.Options{Sink: mediaSink{lib: lib, channel: "support"}},
	})
	if err != nil {
		b.Fatal(err)
	}
	type mail struct {
		raw      []byte
		attachAt int
	}
	var mails []mail
	var size int64
	for i := range 10 {
		raw, at := backlogMixMail(i)
		mails = append(mails, mail{raw, at})
		size += int64(len(raw))
	}
	b.SetBytes(size / int64(len(mails)))
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		m := mails[n%len(mails)]
		if m.attachAt > 0 {
			// A new first quantum of the PDF: 12 base64 characters
			// (9 bytes) from the counter.
			var q [9]byte
			binary.LittleEndian.PutUint64(q[:], uint64(n))
			base64.StdEncoding.Encode(m.raw[m.attachAt:m.attachAt+12], q[:])
		}
		d := a.Analyze(context.Background(), m.raw)
		if d.Text == "" {
			b.Fatalf("mail %d: no text (%s)", n, d.Reason)
		}
		if m.attachAt > 0 && (len(d.Attachments) != 1 || d.Attachments[0].MediaID == "") {
			b.Fatalf("mail %d: attachments %+v, want one stored", n, d.Attachments)
		}
		n++
	}
	if err := lib.Sync(); err != nil {
		b.Fatal(err)
	}
}

// checkSink is the daemon's media sink that also records whether the
// parser's reader hashes for it.
type checkSink struct {
	mediaSink
	hashed bool
}

func (s *checkSink) Put(ctx context.Context, a *mailparse.Attachment, r io.Reader) (string, error) {
	_, s.hashed = r.(media.SHA256Reader)
	return s.mediaSink.Put(ctx, a, r)
}

// TestMediaSinkDigest: an attachment stored through the media sink gets
// the SHA-256 of its content in the library, taken from the parser's
// reader, and the same one in the analysis.
func TestMediaSinkDigest(t *testing.T) {
	idx := &benchIndex{recs: make(map[string]media.Record)}
	lib, err := media.New(media.Options{Dir: t.TempDir(), Key: bytes.Repeat([]byte("k"), 32), PublicURL: "https://gw.example.com", Index: idx})
	if err != nil {
		t.Fatal(err)
	}
	sink := &checkSink{mediaSink: mediaSink{lib: lib, channel: "support"}}
	raw, at := backlogMixMail(9)
	e, err := mailparse.Parse(context.Background(), bytes.NewReader(raw), mailparse.Options{Sink: sink})
	if err != nil {
		t.Fatal(err)
	}
	if len(e.Attachments) != 1 || e.Attachments[0].Ref == "" {
		t.Fatalf("attachments %+v, want one stored", e.Attachments)
	}
	if !sink.hashed {
		t.Error("the parser's attachment reader is not a media.SHA256Reader")
	}
	end := bytes.Index(raw[at:], []byte("\r\n--bm-"))
	content, err := base64.StdEncoding.DecodeString(strings.ReplaceAll(string(raw[at:at+end]), "\r\n", ""))
	if err != nil {
		t.Fatal(err)
	}
	want := sha256.Sum256(content)
	rec, err := idx.Media(context.Background(), e.Attachments[0].Ref)
	if err != nil {
		t.Fatal(err)
	}
	if rec.SHA256 != hex.EncodeToString(want[:]) || e.Attachments[0].SHA256 != rec.SHA256 || rec.Size != int64(len(content)) {
		t.Errorf("library %s (%d bytes), analysis %s; want %x (%d bytes)", rec.SHA256, rec.Size, e.Attachments[0].SHA256, want, len(content))
	}
}
