package mailparse

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// Bytes of the binary fixtures, as generated into testdata.
var (
	testPDF  = []byte("%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog >>\nendobj\ntrailer\n<< /Root 1 0 R >>\n%%EOF\n")
	testJPEG = func() []byte {
		b := []byte("\xff\xd8\xff\xe0\x00\x10JFIF\x00")
		for i := 0; i < 256; i++ {
			b = append(b, byte(i))
		}
		return append(b, 0xff, 0xd9)
	}()
	testPNG = func() []byte {
		b := []byte("\x89PNG\r\n\x1a\n")
		for i := 255; i >= 0; i-- {
			b = append(b, byte(i))
		}
		return b
	}()
)

// dirSink stores attachments as files in a test directory and removes a
// file when reading fails, as AttachmentSink requires.
type dirSink struct {
	dir   string
	mu    sync.Mutex
	puts  int
	fails int
}

// Put implements AttachmentSink.
func (s *dirSink) Put(_ context.Context, a *Attachment, r io.Reader) (string, error) {
	s.mu.Lock()
	s.puts++
	s.mu.Unlock()
	f, err := os.CreateTemp(s.dir, fmt.Sprintf("att-%d-*", a.Index))
	if err != nil {
		return "", err
	}
	if _, err := io.Copy(f, r); err != nil {
		f.Close()
		os.Remove(f.Name())
		s.mu.Lock()
		s.fails++
		s.mu.Unlock()
		return "", fmt.Errorf("dirSink: copy %s: %w", a.Filename, err)
	}
	if err := f.Close(); err != nil {
		return "", err
	}
	return filepath.Base(f.Name()), nil
}

// files lists what the sink holds.
func (s *dirSink) files(t *testing.T) []string {
	t.Helper()
	ents, err := os.ReadDir(s.dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

// content returns a stored attachment's bytes.
func (s *dirSink) content(t *testing.T, a *Attachment) []byte {
	t.Helper()
	if a.Ref == "" {
		t.Fatalf("attachment %d (%s) not stored: %q", a.Index, a.Filename, a.Skipped)
	}
	b, err := os.ReadFile(filepath.Join(s.dir, a.Ref))
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	if got := hex.EncodeToString(sum[:]); got != a.SHA256 {
		t.Errorf("attachment %d: stored bytes hash %s, Attachment.SHA256 %s", a.Index, got, a.SHA256)
	}
	if int64(len(b)) != a.Size {
		t.Errorf("attachment %d: stored %d bytes, Size %d", a.Index, len(b), a.Size)
	}
	return b
}

// sha returns the hex SHA-256 of b.
func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// fixture reads testdata/name.
func fixture(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// hasProblem reports whether a problem contains sub.
func hasProblem(e *Email, sub string) bool {
	for _, p := range e.Problems {
		if strings.Contains(p, sub) {
			return true
		}
	}
	return false
}

// crlf turns "\n" into "\r\n" for inline test messages.
func crlf(s string) string { return strings.ReplaceAll(s, "\n", "\r\n") }

// nestingBomb builds a message with depth nested multiparts.
func nestingBomb(depth int) string {
	var b strings.Builder
	b.WriteString("From: a@example.com\nSubject: bomb\nMessage-ID: <bomb@example.com>\nContent-Type: multipart/mixed; boundary=\"b0\"\n\n")
	for i := 0; i < depth; i++ {
		fmt.Fprintf(&b, "--b%d\nContent-Type: multipart/mixed; boundary=\"b%d\"\n\n", i, i+1)
	}
	fmt.Fprintf(&b, "--b%d\nContent-Type: text/plain\n\ndeep text\n--b%d--\n", depth, depth)
	for i := depth - 1; i >= 0; i-- {
		fmt.Fprintf(&b, "--b%d--\n", i)
	}
	return b.String()
}

// attachmentsMail builds a message with n base64 attachments of the given
// bodies.
func attachmentsMail(bodies ...[]byte) string {
	var b strings.Builder
	b.WriteString("From: a@example.com\nSubject: files\nMessage-ID: <files@example.com>\nContent-Type: multipart/mixed; boundary=\"m\"\n\n--m\nContent-Type: text/plain\n\nfiles attached\n")
	for i, body := range bodies {
		fmt.Fprintf(&b, "--m\nContent-Type: application/octet-stream\nContent-Disposition: attachment; filename=\"f%d.bin\"\nContent-Transfer-Encoding: base64\n\n", i+1)
		enc := base64.StdEncoding.EncodeToString(body)
		for len(enc) > 76 {
			b.WriteString(enc[:76] + "\n")
			enc = enc[76:]
		}
		b.WriteString(enc + "\n")
	}
	b.WriteString("--m--\n")
	return crlf(b.String())
}

// seq returns n bytes of a deterministic pattern.
func seq(n int, seed byte) []byte {
	b := make([]byte, n)
	x := uint32(seed) + 1
	for i := range b {
		x = x*1664525 + 1013904223
		b[i] = byte(x >> 24)
	}
	return b
}

func TestParse(t *testing.T) {
	tests := []struct {
		name  string
		file  string // testdata file, or
		raw   string // an inline message
		opts  Options
		check func(t *testing.T, e *Email, s *dirSink)
	}{
		{
			name: "plain utf-8",
			file: "plain-utf8.eml",
			check: func(t *testing.T, e *Email, s *dirSink) {
				if e.Subject != "Grüße aus Köln" {
					t.Errorf("Subject = %q", e.Subject)
				}
				if want := "Hallo Support,\n\nmein Zähler zeigt 12 € an. Grüße!\n"; e.Text != want {
					t.Errorf("Text = %q, want %q", e.Text, want)
				}
				if len(e.From) != 1 || e.From[0].Address != "alice@example.com" || e.From[0].Name != "Alice Example" || e.FromErr != nil {
					t.Errorf("From = %v, %v", e.From, e.FromErr)
				}
				if e.MessageID != "plain-1@example.com" {
					t.Errorf("MessageID = %q", e.MessageID)
				}
				if strings.Join(e.InReplyTo, ",") != "prev-2@example.org" || strings.Join(e.References, ",") != "root-1@example.org,prev-2@example.org" {
					t.Errorf("InReplyTo %v References %v", e.InReplyTo, e.References)
				}
				if e.ReplyTo != "alice.work@example.com" {
					t.Errorf("ReplyTo = %q", e.ReplyTo)
				}
				want := time.Date(2026, 3, 3, 9, 15, 0, 0, time.UTC)
				if !e.Date.Equal(want) {
					t.Errorf("Date = %v", e.Date)
				}
				if e.HTML != "" || len(e.Attachments) != 0 || len(e.Problems) != 0 || e.CharsetFallbacks != 0 {
					t.Errorf("unexpected extras: html %q atts %d problems %q", e.HTML, len(e.Attachments), e.Problems)
				}
				if e.Size != int64(len(fixture(t, "plain-utf8.eml"))) {
					t.Errorf("Size = %d", e.Size)
				}
			},
		},
		{
			name: "quoted-printable latin1",
			file: "qp-latin1.eml",
			check: func(t *testing.T, e *Email, s *dirSink) {
				if e.Subject != "Café crème" {
					t.Errorf("Subject = %q", e.Subject)
				}
				if want := "Bonjour, le café est très bon. Une ligne très longue coupée.\nFin=.\n"; e.Text != want {
					t.Errorf("Text = %q, want %q", e.Text, want)
				}
				if len(e.Problems) != 0 {
					t.Errorf("Problems = %q", e.Problems)
				}
			},
		},
		{name: "iso-2022-jp", file: "iso2022jp.eml", check: wantSubjectText("お問い合わせの件", "お世話になっております。\n請求書について質問があります。\n")},
		{name: "shift_jis", file: "shift_jis.eml", check: wantSubjectText("見積もり依頼", "見積もりをお願いします。\n")},
		{name: "euc-kr", file: "euc-kr.eml", check: wantSubjectText("문의 드립니다", "안녕하세요. 주문 상태를 알고 싶습니다.\n")},
		{name: "gb18030", file: "gb18030.eml", check: wantSubjectText("订单问题", "你好，我的订单还没有到。\n")},
		{name: "big5", file: "big5.eml", check: wantSubjectText("訂單問題", "您好，請問我的訂單何時出貨？\n")},
		{name: "koi8-r", file: "koi8-r.eml", check: wantSubjectText("Вопрос по заказу", "Здравствуйте! Где мой заказ?\n")},
		{name: "windows-1252", file: "windows-1252.eml", check: wantSubjectText("Smart “quotes”", "He said “hello” – and paid 5 €.\n")},
		{
			name: "format=flowed flags",
			file: "flowed.eml",
			check: func(t *testing.T, e *Email, s *dirSink) {
				if !e.TextFormat.Flowed || !e.TextFormat.DelSp {
					t.Errorf("TextFormat = %+v", e.TextFormat)
				}
				if !strings.Contains(e.Text, "should be \nrejoined") {
					t.Errorf("flowed text must be left raw, got %q", e.Text)
				}
			},
		},
		{
			name: "html only",
			file: "html-only.eml",
			check: func(t *testing.T, e *Email, s *dirSink) {
				if e.Text != "" || !strings.Contains(e.HTML, "<b>HTML</b>") || len(e.Attachments) != 0 {
					t.Errorf("Text %q HTML %q atts %d", e.Text, e.HTML, len(e.Attachments))
				}
			},
		},
		{
			name: "multipart/alternative",
			file: "alternative.eml",
			check: func(t *testing.T, e *Email, s *dirSink) {
				if e.Text != "Plain version" || e.HTML != "<p>HTML version</p>" || len(e.Attachments) != 0 {
					t.Errorf("Text %q HTML %q atts %d", e.Text, e.HTML, len(e.Attachments))
				}
			},
		},
		{
			name: "apple mail split text around inline image",
			file: "apple-split.eml",
			check: func(t *testing.T, e *Email, s *dirSink) {
				if want := "Here is the photo:\n\nThanks, Alice"; e.Text != want {
					t.Errorf("Text = %q, want %q", e.Text, want)
				}
				if len(e.Attachments) != 1 {
					t.Fatalf("attachments = %d", len(e.Attachments))
				}
				a := e.Attachments[0]
				if a.Filename != "IMG_0001.jpeg" || a.ContentType != "image/jpeg" || !a.Inline || a.Index != 1 {
					t.Errorf("attachment = %+v", a)
				}
				if !bytes.Equal(s.content(t, a), testJPEG) || a.SHA256 != sha(testJPEG) {
					t.Errorf("jpeg bytes differ")
				}
			},
		},
		{
			name: "cid image referenced from html",
			file: "cid-image.eml",
			check: func(t *testing.T, e *Email, s *dirSink) {
				if e.Text != "See logo" || !strings.Contains(e.HTML, "cid:Logo.1@example.com") {
					t.Errorf("Text %q HTML %q", e.Text, e.HTML)
				}
				if len(e.Attachments) != 1 {
					t.Fatalf("attachments = %d", len(e.Attachments))
				}
				a := e.Attachments[0]
				if a.ContentID != "logo.1@example.com" || !a.Inline || a.Filename != "attachment-1.png" {
					t.Errorf("attachment = %+v", a)
				}
				if !bytes.Equal(s.content(t, a), testPNG) {
					t.Errorf("png bytes differ")
				}
			},
		},
		{
			name: "pdf attachment",
			file: "pdf-attachment.eml",
			check: func(t *testing.T, e *Email, s *dirSink) {
				if e.Text != "Invoice attached." {
					t.Errorf("Text = %q", e.Text)
				}
				if len(e.Attachments) != 1 {
					t.Fatalf("attachments = %d", len(e.Attachments))
				}
				a := e.Attachments[0]
				if a.Filename != "invoice.pdf" || a.ContentType != "application/pdf" || a.Inline || a.Size != int64(len(testPDF)) || a.SHA256 != sha(testPDF) || a.Skipped != "" {
					t.Errorf("attachment = %+v", a)
				}
				if !bytes.Equal(s.content(t, a), testPDF) {
					t.Errorf("pdf bytes differ")
				}
				if len(e.Problems) != 0 {
					t.Errorf("Problems = %q", e.Problems)
				}
			},
		},
		{
			name: "rfc 2231 filenames",
			file: "rfc2231.eml",
			check: func(t *testing.T, e *Email, s *dirSink) {
				want := []string{"résumé.pdf", "日本語のnotes.txt", "very-long-name.bin"}
				if len(e.Attachments) != len(want) {
					t.Fatalf("attachments = %d", len(e.Attachments))
				}
				for i, w := range want {
					if e.Attachments[i].Filename != w {
						t.Errorf("attachment %d Filename = %q, want %q", i+1, e.Attachments[i].Filename, w)
					}
				}
				if e.Attachments[1].ContentType != "text/plain" || e.Text != "names" {
					t.Errorf("text attachment %+v, Text %q", e.Attachments[1], e.Text)
				}
				if got := s.content(t, e.Attachments[1]); string(got) != "some notes" {
					t.Errorf("text attachment content %q", got)
				}
			},
		},
		{
			name: "encoded-word filenames",
			file: "encoded-word-filename.eml",
			check: func(t *testing.T, e *Email, s *dirSink) {
				if len(e.Attachments) != 2 || e.Attachments[0].Filename != "Übersicht 2026.pdf" || e.Attachments[1].Filename != "資料.zip" {
					for _, a := range e.Attachments {
						t.Logf("%+v", a)
					}
					t.Errorf("filenames wrong")
				}
			},
		},
		{
			name: "no filename falls back",
			file: "no-filename.eml",
			check: func(t *testing.T, e *Email, s *dirSink) {
				if len(e.Attachments) != 2 {
					t.Fatalf("attachments = %d", len(e.Attachments))
				}
				if e.Attachments[0].Filename != "attachment-1.pdf" || e.Attachments[1].Filename != "attachment-2.bin" {
					t.Errorf("filenames %q %q", e.Attachments[0].Filename, e.Attachments[1].Filename)
				}
			},
		},
		{
			name: "message/rfc822 forward",
			file: "forward.eml",
			check: func(t *testing.T, e *Email, s *dirSink) {
				if e.Text != "Forwarding this." {
					t.Errorf("Text = %q (inner message must not be body text)", e.Text)
				}
				if len(e.Attachments) != 2 {
					t.Fatalf("attachments = %d", len(e.Attachments))
				}
				a := e.Attachments[0]
				if a.Filename != "Original question.eml" || a.ContentType != "message/rfc822" {
					t.Errorf("attachment = %+v", a)
				}
				got := s.content(t, a)
				if !bytes.HasPrefix(got, []byte("From: Bob <bob@example.net>\r\n")) || !bytes.Contains(got, []byte("Inner body must not become the text.")) {
					t.Errorf("forwarded bytes = %q", got)
				}
				if b := e.Attachments[1]; b.Filename != "forwarded-2.eml" {
					t.Errorf("second forward = %+v", b)
				}
			},
		},
		{
			name: "multipart/report dsn",
			file: "dsn.eml",
			check: func(t *testing.T, e *Email, s *dirSink) {
				r := e.Report
				if r == nil {
					t.Fatal("Report is nil")
				}
				want := Report{
					ReportType:        "delivery-status",
					OriginalMessageID: "sent-42@mailgate.example.org",
					Action:            "failed",
					Status:            "5.1.1",
					DiagnosticCode:    "550 5.1.1 <nobody@example.net>: Recipient address rejected: User unknown",
					FinalRecipient:    "nobody@example.net",
				}
				if *r != want {
					t.Errorf("Report = %+v\nwant     %+v", *r, want)
				}
				if !strings.HasPrefix(e.Text, "This is the mail system") {
					t.Errorf("Text = %q", e.Text)
				}
				if len(e.Attachments) != 2 || e.Attachments[0].ContentType != "message/delivery-status" || e.Attachments[1].ContentType != "text/rfc822-headers" {
					t.Errorf("attachments = %d", len(e.Attachments))
				}
			},
		},
		{
			name: "over-size attachment is skipped and the sink cleans up",
			raw:  attachmentsMail(seq(3000, 1), seq(100, 2)),
			opts: Options{MaxAttachmentSize: 1024},
			check: func(t *testing.T, e *Email, s *dirSink) {
				if len(e.Attachments) != 2 {
					t.Fatalf("attachments = %d", len(e.Attachments))
				}
				a := e.Attachments[0]
				if a.Skipped != "larger than 1 KiB" || a.Ref != "" || a.Size != 3000 || a.SHA256 != sha(seq(3000, 1)) {
					t.Errorf("attachment = %+v", a)
				}
				if s.fails != 1 || len(s.files(t)) != 1 {
					t.Errorf("sink fails %d files %v", s.fails, s.files(t))
				}
				if !bytes.Equal(s.content(t, e.Attachments[1]), seq(100, 2)) {
					t.Errorf("second attachment differs")
				}
			},
		},
		{
			name: "over-count attachments",
			raw:  attachmentsMail(seq(10, 1), seq(10, 2), seq(10, 3), seq(10, 4)),
			opts: Options{MaxAttachments: 2},
			check: func(t *testing.T, e *Email, s *dirSink) {
				if len(e.Attachments) != 4 || s.puts != 2 {
					t.Fatalf("attachments %d puts %d", len(e.Attachments), s.puts)
				}
				for i, a := range e.Attachments {
					stored := i < 2
					if stored != (a.Ref != "") || stored != (a.Skipped == "") {
						t.Errorf("attachment %d = %+v", i+1, a)
					}
					if a.SHA256 != sha(seq(10, byte(i+1))) || a.Size != 10 {
						t.Errorf("attachment %d hash/size wrong: %+v", i+1, a)
					}
				}
				if e.Attachments[3].Skipped != "more than 2 attachments" {
					t.Errorf("Skipped = %q", e.Attachments[3].Skipped)
				}
			},
		},
		{
			name: "unknown charset fallback is counted",
			file: "unknown-charset.eml",
			check: func(t *testing.T, e *Email, s *dirSink) {
				if e.CharsetFallbacks != 1 || !hasProblem(e, `unknown charset "x-klingon"`) {
					t.Errorf("CharsetFallbacks %d Problems %q", e.CharsetFallbacks, e.Problems)
				}
				if e.Text != "nuqneH caf\uFFFD ok\n" {
					t.Errorf("Text = %q", e.Text)
				}
				if e.Subject != "qapla'" {
					t.Errorf("Subject = %q", e.Subject)
				}
			},
		},
		{
			name: "nesting bomb of 200 levels",
			raw:  nestingBomb(200),
			check: func(t *testing.T, e *Email, s *dirSink) {
				if !hasProblem(e, "nesting deeper than 30") || e.Subject != "bomb" || e.Text != "" {
					t.Errorf("Problems %q Subject %q Text %q", e.Problems, e.Subject, e.Text)
				}
			},
		},
		{
			name: "nesting within the limit is followed",
			raw:  nestingBomb(20),
			check: func(t *testing.T, e *Email, s *dirSink) {
				if e.Text != "deep text" || len(e.Problems) != 0 {
					t.Errorf("Text %q Problems %q", e.Text, e.Problems)
				}
			},
		},
		{
			name: "bad base64 keeps what decodes",
			file: "bad-base64.eml",
			check: func(t *testing.T, e *Email, s *dirSink) {
				if !strings.HasPrefix(e.Text, "Hello, this decodes fine. ") || !strings.HasSuffix(e.Text, "And so does this.") {
					t.Errorf("Text = %q", e.Text)
				}
				if !hasProblem(e, "part 1: bad base64") {
					t.Errorf("Problems = %q", e.Problems)
				}
			},
		},
		{
			name: "missing closing boundary",
			file: "missing-boundary-end.eml",
			check: func(t *testing.T, e *Email, s *dirSink) {
				if e.Text != "Body before the cut." || !hasProblem(e, "without its closing boundary") {
					t.Errorf("Text %q Problems %q", e.Text, e.Problems)
				}
				if len(e.Attachments) != 1 || !bytes.Equal(s.content(t, e.Attachments[0]), []byte("%PDF-1.4\n")) {
					t.Errorf("truncated attachment not kept: %+v %q", e.Attachments[0], e.Problems)
				}
			},
		},
		{
			name: "nul bytes",
			file: "nul-bytes.eml",
			check: func(t *testing.T, e *Email, s *dirSink) {
				if e.Text != "Hello World\n" || e.Subject != "nulbytes" || !hasProblem(e, "NUL") {
					t.Errorf("Text %q Subject %q Problems %q", e.Text, e.Subject, e.Problems)
				}
			},
		},
		{
			name: "no from",
			file: "no-from.eml",
			check: func(t *testing.T, e *Email, s *dirSink) {
				if !errors.Is(e.FromErr, ErrNoFrom) || len(e.From) != 0 || e.Text != "No From here.\n" || e.MessageID != "" {
					t.Errorf("From %v FromErr %v Text %q", e.From, e.FromErr, e.Text)
				}
			},
		},
		{
			name: "malformed from is recovered leniently",
			raw:  crlf("From: Doe, John john.doe@example.com\nSubject: x\n\nhi\n"),
			check: func(t *testing.T, e *Email, s *dirSink) {
				if len(e.From) != 1 || e.From[0].Address != "john.doe@example.com" || e.FromErr != nil || !hasProblem(e, "malformed") {
					t.Errorf("From %v FromErr %v Problems %q", e.From, e.FromErr, e.Problems)
				}
			},
		},
		{
			name: "garbage from",
			raw:  "From: nobody at all\n\nhi\n",
			check: func(t *testing.T, e *Email, s *dirSink) {
				if len(e.From) != 0 || e.FromErr == nil || e.FromRaw != "nobody at all" {
					t.Errorf("From %v FromErr %v FromRaw %q", e.From, e.FromErr, e.FromRaw)
				}
			},
		},
		{
			name: "100 KB header line",
			raw:  "From: a@example.com\nSubject: " + strings.Repeat("x", 100<<10) + "\nX-Long: " + strings.Repeat("y ", 60<<10) + "\n\nbody\n",
			check: func(t *testing.T, e *Email, s *dirSink) {
				if len(e.Subject) != 100<<10 || e.Text != "body\n" {
					t.Errorf("Subject len %d Text %q", len(e.Subject), e.Text)
				}
			},
		},
		{
			name: "mbox separator and missing blank line",
			raw:  "From MAILER-DAEMON Tue Mar  3 10:00:00 2026\nFrom: a@example.com\nSubject: s\nThis line starts the body.\nsecond\n",
			check: func(t *testing.T, e *Email, s *dirSink) {
				if e.Text != "This line starts the body.\nsecond\n" || e.Subject != "s" || !hasProblem(e, "not ended by an empty line") || hasProblem(e, "skipped") {
					t.Errorf("Text %q Subject %q Problems %q", e.Text, e.Subject, e.Problems)
				}
			},
		},
		{
			name: "declared us-ascii carrying utf-8",
			raw:  "From: a@example.com\nContent-Type: text/plain; charset=us-ascii\n\nna\xc3\xafve\n",
			check: func(t *testing.T, e *Email, s *dirSink) {
				if e.Text != "naïve\n" || len(e.Problems) != 0 {
					t.Errorf("Text %q Problems %q", e.Text, e.Problems)
				}
			},
		},
		{
			name: "declared utf-8 with invalid bytes",
			raw:  "From: a@example.com\nContent-Type: text/plain; charset=utf-8\n\nbad \xff\xfe bytes\n",
			check: func(t *testing.T, e *Email, s *dirSink) {
				if e.Text != "bad \uFFFD bytes\n" || !hasProblem(e, "does not match its charset") || e.CharsetFallbacks != 0 {
					t.Errorf("Text %q Problems %q", e.Text, e.Problems)
				}
			},
		},
		{
			name: "undeclared 8-bit read as windows-1252",
			raw:  "From: a@example.com\n\ncaf\xe9\n",
			check: func(t *testing.T, e *Email, s *dirSink) {
				if e.Text != "café\n" {
					t.Errorf("Text %q", e.Text)
				}
			},
		},
		{
			name: "text attachment and top-level attachment",
			raw:  crlf("From: a@example.com\nContent-Type: text/plain\nContent-Disposition: attachment; filename=log.txt\n\nlog line\n"),
			check: func(t *testing.T, e *Email, s *dirSink) {
				if e.Text != "" || len(e.Attachments) != 1 || e.Attachments[0].Filename != "log.txt" {
					t.Errorf("Text %q attachments %d", e.Text, len(e.Attachments))
				}
			},
		},
		{
			name: "multipart without any boundary line is read as text",
			raw:  "From: a@example.com\nContent-Type: multipart/mixed; boundary=zzz\n\njust text\n",
			check: func(t *testing.T, e *Email, s *dirSink) {
				if e.Text != "just text\n" || !hasProblem(e, "no part delimited") {
					t.Errorf("Text %q Problems %q", e.Text, e.Problems)
				}
			},
		},
		{
			name: "over-long text is cut",
			raw:  "From: a@example.com\n\n" + strings.Repeat("é", 100),
			opts: Options{MaxTextSize: 51},
			check: func(t *testing.T, e *Email, s *dirSink) {
				if e.Text != strings.Repeat("é", 25) || !hasProblem(e, "longer than") {
					t.Errorf("Text %q Problems %q", e.Text, e.Problems)
				}
			},
		},
		{
			name: "alternative inside mixed, second plain ignored",
			raw: crlf(`From: a@example.com
Content-Type: multipart/mixed; boundary=o

--o
Content-Type: multipart/alternative; boundary=i

--i
Content-Type: text/plain

first
--i
Content-Type: text/plain

same text again
--i
Content-Type: text/html

<p>first</p>
--i--
--o
Content-Type: text/plain

footer
--o--
`),
			check: func(t *testing.T, e *Email, s *dirSink) {
				if e.Text != "first\nfooter" || e.HTML != "<p>first</p>" || len(e.Attachments) != 0 {
					t.Errorf("Text %q HTML %q atts %d", e.Text, e.HTML, len(e.Attachments))
				}
			},
		},
		{
			name: "malformed part header",
			raw:  "From: a@example.com\nContent-Type: multipart/mixed; boundary=x\n\n--x\nContent-Type: text/plain\n\nfirst\n--x\nBad Header Line\n\nbody\n--x--\n",
			check: func(t *testing.T, e *Email, s *dirSink) {
				if e.Text != "first" || !hasProblem(e, "message: multipart/mixed is malformed at its part 2") {
					t.Errorf("Text %q Problems %q", e.Text, e.Problems)
				}
			},
		},
		{
			name: "header only, no body",
			raw:  "From: a@example.com\nSubject: empty",
			check: func(t *testing.T, e *Email, s *dirSink) {
				if e.Subject != "empty" || e.Text != "" || len(e.Problems) != 0 {
					t.Errorf("Subject %q Text %q Problems %q", e.Subject, e.Text, e.Problems)
				}
			},
		},
		{
			name: "apple mail split html",
			raw: crlf(`From: a@example.com
Content-Type: multipart/alternative; boundary=a

--a
Content-Type: text/plain

text [image] more
--a
Content-Type: multipart/mixed; boundary=m

--m
Content-Type: text/html

<p>text</p>
--m
Content-Type: image/gif
Content-Disposition: inline; filename=x.gif

GIF89a
--m
Content-Type: text/html

<p>more</p>
--m--
--a--
`),
			check: func(t *testing.T, e *Email, s *dirSink) {
				if e.Text != "text [image] more" || e.HTML != "<p>text</p>" || len(e.Attachments) != 1 || e.Attachments[0].Filename != "x.gif" || !e.Attachments[0].Inline {
					t.Errorf("Text %q HTML %q atts %d", e.Text, e.HTML, len(e.Attachments))
				}
			},
		},
		{
			name: "read receipt (mdn)",
			raw: crlf(`From: b@example.net
Subject: Read: your ticket
Content-Type: multipart/report; report-type=disposition-notification; boundary=r

--r
Content-Type: text/plain

Your message was displayed.
--r
Content-Type: message/disposition-notification

Reporting-UA: mail.example.net; Mailer
Final-Recipient: rfc822;b@example.net
Original-Message-ID: <sent-7@mailgate.example.org>
Disposition: manual-action/MDN-sent-manually; displayed
--r--
`),
			check: func(t *testing.T, e *Email, s *dirSink) {
				if e.Report == nil || e.Report.ReportType != "disposition-notification" || e.Report.OriginalMessageID != "sent-7@mailgate.example.org" {
					t.Errorf("Report = %+v", e.Report)
				}
			},
		},
		{
			name: "forwarded message inside a report gives the original id",
			raw: crlf(`From: MAILER-DAEMON@example.net
Content-Type: multipart/report; report-type=delivery-status; boundary=r

--r
Content-Type: text/plain

failed
--r
Content-Type: message/delivery-status
Content-Transfer-Encoding: base64

` + base64.StdEncoding.EncodeToString([]byte("Reporting-MTA: dns; x\r\n\r\nFinal-Recipient: rfc822; z@example.com\r\nAction: delayed\r\nStatus: 4.4.1 (timeout)\r\n")) + `
--r
Content-Type: message/rfc822

Message-ID: <orig-1@mailgate.example.org>
Subject: hello

body
--r--
`),
			check: func(t *testing.T, e *Email, s *dirSink) {
				want := Report{ReportType: "delivery-status", OriginalMessageID: "orig-1@mailgate.example.org", Action: "delayed", Status: "4.4.1", FinalRecipient: "z@example.com"}
				if e.Report == nil || *e.Report != want {
					t.Errorf("Report = %+v", e.Report)
				}
				if len(e.Attachments) != 2 || e.Attachments[1].Filename != "hello.eml" {
					t.Errorf("attachments %d", len(e.Attachments))
				}
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			raw := []byte(tc.raw)
			if tc.file != "" {
				raw = fixture(t, tc.file)
			}
			s := &dirSink{dir: t.TempDir()}
			opts := tc.opts
			opts.Sink = s
			e, err := Parse(context.Background(), bytes.NewReader(raw), opts)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if e.Size != int64(len(raw)) {
				t.Errorf("Size = %d, want %d", e.Size, len(raw))
			}
			for _, a := range e.Attachments {
				if a.Ref != "" {
					s.content(t, a) // checks SHA256 and Size against the stored file
				}
			}
			tc.check(t, e, s)
		})
	}
}

// wantSubjectText checks Subject and Text and that nothing went wrong.
func wantSubjectText(subject, text string) func(t *testing.T, e *Email, s *dirSink) {
	return func(t *testing.T, e *Email, s *dirSink) {
		t.Helper()
		if e.Subject != subject {
			t.Errorf("Subject = %q, want %q", e.Subject, subject)
		}
		if e.Text != text {
			t.Errorf("Text = %q, want %q", e.Text, text)
		}
		if len(e.Problems) != 0 || e.CharsetFallbacks != 0 {
			t.Errorf("Problems = %q, fallbacks %d", e.Problems, e.CharsetFallbacks)
		}
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		raw  string
	}{
		{"empty", ""},
		{"blank lines", "\n\n\n"},
		{"binary garbage", "\x00\x01\x02\xff\xfe garbage without a field\n\x00\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e, err := Parse(context.Background(), strings.NewReader(tc.raw), Options{})
			if !errors.Is(err, ErrNoHeader) || e != nil {
				t.Errorf("Parse = %v, %v; want ErrNoHeader", e, err)
			}
		})
	}
}

// failingReader returns data and then an error.
type failingReader struct {
	data []byte
	err  error
}

func (f *failingReader) Read(b []byte) (int, error) {
	if len(f.data) == 0 {
		return 0, f.err
	}
	n := copy(b, f.data)
	f.data = f.data[n:]
	return n, nil
}

func TestParseInputFailure(t *testing.T) {
	boom := errors.New("connection reset")
	raw := attachmentsMail(seq(5000, 1))
	r := &failingReader{data: []byte(raw[:len(raw)/2]), err: boom}
	s := &dirSink{dir: t.TempDir()}
	_, err := Parse(context.Background(), r, Options{Sink: s})
	if !errors.Is(err, boom) || !strings.Contains(err.Error(), "files@example.com") {
		t.Fatalf("Parse error = %v, want %v naming the message", err, boom)
	}
	if files := s.files(t); len(files) != 0 {
		t.Errorf("sink kept %v after failure", files)
	}
}

func TestParseContextCanceled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := Parse(ctx, strings.NewReader(attachmentsMail(seq(10, 1))), Options{})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Parse error = %v", err)
	}
}

// panicSink panics to prove Parse recovers.
type panicSink struct{}

func (panicSink) Put(context.Context, *Attachment, io.Reader) (string, error) {
	panic("sink exploded")
}

func TestParseRecoversPanic(t *testing.T) {
	_, err := Parse(context.Background(), strings.NewReader(attachmentsMail(seq(10, 1))), Options{Sink: panicSink{}})
	if err == nil || !strings.Contains(err.Error(), "<files@example.com>") || !strings.Contains(err.Error(), "sink exploded") {
		t.Fatalf("Parse error = %v", err)
	}
}

// shortSink reads only the first bytes and claims success.
type shortSink struct{}

func (shortSink) Put(_ context.Context, _ *Attachment, r io.Reader) (string, error) {
	var b [4]byte
	_, err := io.ReadFull(r, b[:])
	return "short", err
}

func TestParseSinkStopsEarly(t *testing.T) {
	e, err := Parse(context.Background(), strings.NewReader(attachmentsMail(seq(100, 1))), Options{Sink: shortSink{}})
	if err != nil {
		t.Fatal(err)
	}
	a := e.Attachments[0]
	if a.Ref != "short" || a.Size != 100 || a.SHA256 != sha(seq(100, 1)) || !hasProblem(e, "stopped reading 96 bytes early") {
		t.Errorf("attachment %+v problems %q", a, e.Problems)
	}
}

func TestParseNilSink(t *testing.T) {
	e, err := Parse(context.Background(), bytes.NewReader(fixture(t, "pdf-attachment.eml")), Options{})
	if err != nil {
		t.Fatal(err)
	}
	a := e.Attachments[0]
	if a.Ref != "" || a.Skipped != "" || a.SHA256 != sha(testPDF) || a.Size != int64(len(testPDF)) {
		t.Errorf("attachment = %+v", a)
	}
}

func TestSanitizeFilename(t *testing.T) {
	long := strings.Repeat("ü", 150) + ".pdf" // 304 bytes
	tests := []struct{ in, want string }{
		{"report.pdf", "report.pdf"},
		{"../../etc/passwd", "passwd"},
		{`C:\Users\eve\evil.exe`, "evil.exe"},
		{"..hidden", "hidden"},
		{". . .x", "x"},
		{"a\x00b\x07c\r\n.txt", "abc.txt"},
		{"invoice\u202Efdp.exe", "invoicefdp.exe"},
		{"  spaced  ", "spaced"},
		{"tab\tname", "tabname"},
		{"bad\xffutf8", "bad\uFFFDutf8"},
		{"../..", ""},
		{"", ""},
		{long, strings.Repeat("ü", 98) + ".pdf"},
		{strings.Repeat("a", 250), strings.Repeat("a", 200)},
	}
	for _, tc := range tests {
		got := sanitizeFilename(tc.in)
		if got != tc.want {
			t.Errorf("sanitizeFilename(%q) = %q, want %q", tc.in, got, tc.want)
		}
		if len(got) > maxFilename {
			t.Errorf("sanitizeFilename(%q) is %d bytes", tc.in, len(got))
		}
	}
}

func TestHumanSize(t *testing.T) {
	tests := []struct {
		n    int64
		want string
	}{{25 << 20, "25 MiB"}, {1024, "1 KiB"}, {1536, "1.5 KiB"}, {100, "100 bytes"}, {3 << 30, "3 GiB"}}
	for _, tc := range tests {
		if got := humanSize(tc.n); got != tc.want {
			t.Errorf("humanSize(%d) = %q, want %q", tc.n, got, tc.want)
		}
	}
}

func TestParseHeaderValue(t *testing.T) {
	tests := []struct {
		in     string
		value  string
		params map[string]string
	}{
		{`text/plain; charset="UTF-8"; format=flowed`, "text/plain", map[string]string{"charset": "UTF-8", "format": "flowed"}},
		{`Attachment; filename=my file.pdf`, "attachment", map[string]string{"filename": "my file.pdf"}},
		{`attachment; filename="a\"b.txt"; size=3;`, "attachment", map[string]string{"filename": `a"b.txt`, "size": "3"}},
		{`attachment; filename*=UTF-8''%E2%82%AC%20rates.pdf; filename="fallback.pdf"`, "attachment", map[string]string{"filename": "€ rates.pdf"}},
		{`attachment; filename*0*=iso-8859-1''caf%E9; filename*1=".txt"`, "attachment", map[string]string{"filename": "café.txt"}},
		{`attachment; filename*1="b"; filename*0="a"`, "attachment", map[string]string{"filename": "ab"}},
		{`attachment; filename*1="orphan"`, "attachment", map[string]string{}},
		{`attachment; filename*=x-unknown''%41%ff`, "attachment", map[string]string{"filename": "A\uFFFD"}},
		{`attachment; filename="=?utf-8?Q?na=C3=AFve?= file.txt"`, "attachment", map[string]string{"filename": "naïve file.txt"}},
		{`image/png; name="unterminated`, "image/png", map[string]string{"name": "unterminated"}},
		{`multipart/mixed;; boundary=abc ; ; novalue`, "multipart/mixed", map[string]string{"boundary": "abc"}},
	}
	for _, tc := range tests {
		hv, _ := parseHeaderValue(tc.in)
		if hv.value != tc.value || len(hv.params) != len(tc.params) {
			t.Errorf("parseHeaderValue(%q) = %q %q, want %q %q", tc.in, hv.value, hv.params, tc.value, tc.params)
			continue
		}
		for k, v := range tc.params {
			if hv.params[k] != v {
				t.Errorf("parseHeaderValue(%q)[%s] = %q, want %q", tc.in, k, hv.params[k], v)
			}
		}
	}
}

func TestDecodeWords(t *testing.T) {
	tests := []struct{ in, want string }{
		{"plain", "plain"},
		{"=?UTF-8?B?w6k=?=", "é"},
		{"=?utf-8?q?a_b?= =?utf-8?q?c?=", "a bc"},
		{"x =?utf-8?q?a?= y", "x a y"},
		// "é" (C3 A9) split across two words.
		{"=?UTF-8?B?w6=?= =?UTF-8?B?qQ==?=", "é"},
		{"=?utf-8?Q?=C3?= =?utf-8?Q?=A9t=C3=A9?=", "été"},
		{"=?iso-8859-1?q?caf=E9?= =?utf-8?q?_=E2=82=AC?=", "café €"},
		{"=?broken", "=?broken"},
		{"a =?utf-8?x?zz?= b", "a =?utf-8?x?zz?= b"},
		{"=?utf-8?q?end?=  ", "end  "},
		{"=?utf-8*en?q?lang?=", "lang"},
		{"latin1 caf\xe9", "latin1 café"},
	}
	for _, tc := range tests {
		if got := decodeWords(tc.in); got != tc.want {
			t.Errorf("decodeWords(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestBase64Reader(t *testing.T) {
	tests := []struct {
		in   string
		want string
		bad  int
	}{
		{"aGVsbG8=", "hello", 0},
		{"aGVs\r\nbG8=\r\n", "hello", 0},
		{"aGVsbG8", "hello", 0},
		{"aGVs*bG8=", "", 9}, // a corrupt line is dropped whole
		{"aGk=aGk=", "hihi", 0},
		{"aGVsbG8=a", "hello", 1},
		{"aGVsbG8_-w==", "hello?\xfb", 0},
		{"aGVs\r\n!!not base64!!\r\nbG8=\r\n", "hello", 14},
	}
	for _, tc := range tests {
		d := newBase64Reader(iotestOneByte(strings.NewReader(tc.in)))
		got, err := io.ReadAll(d)
		if err != nil || string(got) != tc.want || d.badBytes() != tc.bad {
			t.Errorf("base64 %q = %q, %v, bad %d; want %q bad %d", tc.in, got, err, d.badBytes(), tc.want, tc.bad)
		}
	}
}

func TestQPReader(t *testing.T) {
	tests := []struct {
		in   string
		want string
		bad  int
	}{
		{"caf=E9\r\n", "caf\xe9\r\n", 0},
		{"soft=\r\nbreak\n", "softbreak\n", 0},
		{"trailing   \r\nx", "trailing\r\nx", 0},
		{"bad =ZZ escape=", "bad =ZZ escape", 1},
		{"lower =e9", "lower \xe9", 0},
		{"end =4", "end =4", 1},
		{strings.Repeat("a", 20000) + "=41", strings.Repeat("a", 20000) + "A", 0},
	}
	for _, tc := range tests {
		d := newQPReader(iotestOneByte(strings.NewReader(tc.in)))
		got, err := io.ReadAll(d)
		if err != nil || string(got) != tc.want || d.badBytes() != tc.bad {
			t.Errorf("qp %.40q = %.40q, %v, bad %d; want %.40q bad %d", tc.in, got, err, d.badBytes(), tc.want, tc.bad)
		}
	}
}

// oneByteReader reads one byte at a time to exercise decoder state across
// reads.
type oneByteReader struct{ r io.Reader }

func (o oneByteReader) Read(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	return o.r.Read(b[:1])
}

// iotestOneByte wraps r in a oneByteReader.
func iotestOneByte(r io.Reader) io.Reader { return oneByteReader{r} }

func TestParseHeaderEdgeCases(t *testing.T) {
	manyParts := func(n int) string {
		var b strings.Builder
		b.WriteString("From: a@example.com\nContent-Type: multipart/mixed; boundary=p\n\n")
		for i := 0; i < n; i++ {
			b.WriteString("--p\nContent-Type: application/octet-stream\nContent-Transfer-Encoding: x-weird\n\nzz\n")
		}
		b.WriteString("--p--\n")
		return b.String()
	}
	tests := []struct {
		name  string
		raw   string
		check func(t *testing.T, e *Email)
	}{
		{
			name: "message-id without @ is kept",
			raw:  "From: a@example.com\nMessage-ID: <1234.JavaMail.host>\n\n",
			check: func(t *testing.T, e *Email) {
				if e.MessageID != "1234.JavaMail.host" || len(e.Problems) != 0 {
					t.Errorf("MessageID %q Problems %q", e.MessageID, e.Problems)
				}
			},
		},
		{
			name: "unusable message-id",
			raw:  "From: a@example.com\nMessage-ID: no brackets here\nDate: not a date\nSender: nobody\n\n",
			check: func(t *testing.T, e *Email) {
				if e.MessageID != "" || !hasProblem(e, "Message-ID") || !hasProblem(e, "Date") || !hasProblem(e, "Sender") || !e.Date.IsZero() {
					t.Errorf("MessageID %q Problems %q", e.MessageID, e.Problems)
				}
			},
		},
		{
			name: "sender and references with junk",
			raw:  "From: a@example.com\nSender: List <list@example.org>\nReferences: <a@x> junk (comment) <b@y>\n <c@z>\n\n",
			check: func(t *testing.T, e *Email) {
				if e.Sender != "list@example.org" || strings.Join(e.References, " ") != "a@x b@y c@z" {
					t.Errorf("Sender %q References %q", e.Sender, e.References)
				}
			},
		},
		{
			name: "invalid content type and unknown encoding",
			raw:  "From: a@example.com\nContent-Type: garbage\nContent-Transfer-Encoding: x-uuencode\n\nhello\n",
			check: func(t *testing.T, e *Email) {
				if e.Text != "hello\n" || !hasProblem(e, "invalid Content-Type") || !hasProblem(e, "unknown Content-Transfer-Encoding") {
					t.Errorf("Text %q Problems %q", e.Text, e.Problems)
				}
			},
		},
		{
			name: "problems are capped",
			raw:  manyParts(150),
			check: func(t *testing.T, e *Email) {
				if len(e.Problems) != maxProblems+1 || !strings.HasSuffix(e.Problems[maxProblems], "further problems not listed") {
					t.Errorf("%d problems, last %q", len(e.Problems), e.Problems[len(e.Problems)-1])
				}
			},
		},
		{
			name: "attachment list is capped",
			raw:  manyParts(DefaultMaxAttachments + maxListedAttachmentsExtra + 5),
			check: func(t *testing.T, e *Email) {
				if len(e.Attachments) != DefaultMaxAttachments+maxListedAttachmentsExtra {
					t.Errorf("%d attachments", len(e.Attachments))
				}
			},
		},
		{
			name: "leading garbage before the header",
			raw:  "\x00\x01 junk\n\nFrom: a@example.com\n\nhi\n",
			check: func(t *testing.T, e *Email) {
				if len(e.From) != 1 || e.Text != "hi\n" || !hasProblem(e, "2 lines before the header skipped") {
					t.Errorf("From %v Text %q Problems %q", e.From, e.Text, e.Problems)
				}
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e, err := Parse(context.Background(), strings.NewReader(tc.raw), Options{})
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, e)
		})
	}
}

func TestExtensionFor(t *testing.T) {
	tests := map[string]string{
		"application/pdf": ".pdf", "image/png": ".png", "image/jpeg": ".jpg", "image/gif": ".gif",
		"text/plain": ".txt", "text/html": ".html", "message/rfc822": ".eml", "application/zip": ".zip",
		"application/vnd.openxmlformats-officedocument.wordprocessingml.document": ".docx",
		"application/vnd.openxmlformats-officedocument.spreadsheetml.sheet":       ".xlsx",
		"text/calendar": ".ics", "application/octet-stream": ".bin", "text/csv": ".txt", "video/x-odd": ".bin",
	}
	for mt, want := range tests {
		if got := extensionFor(mt); got != want {
			t.Errorf("extensionFor(%q) = %q, want %q", mt, got, want)
		}
	}
}

func TestParseCc(t *testing.T) {
	tests := []struct {
		name    string
		header  string
		want    []string // "Name <addr>" or "addr"
		problem string
	}{
		{name: "none", header: "", want: nil},
		{name: "two", header: "Cc: Bob Example <bob@example.org>, carol@example.net\n",
			want: []string{"Bob Example <bob@example.org>", "carol@example.net"}},
		{name: "folded with encoded name", header: "Cc: =?UTF-8?Q?J=C3=BCrgen?= <juergen@example.de>,\n dave@example.com\n",
			want: []string{"Jürgen <juergen@example.de>", "dave@example.com"}},
		{name: "two fields read in order", header: "Cc: a@example.org\nCc: b@example.org\n",
			want: []string{"a@example.org", "b@example.org"}},
		{name: "group syntax", header: "Cc: Team: x@example.org, y@example.org;\n",
			want: []string{"x@example.org", "y@example.org"}},
		{name: "unparsable is left out, not guessed", header: "Cc: bob@example.org <<evil>>, ,,\n",
			want: nil, problem: "Cc "},
		{name: "one bad field, one good", header: "Cc: <<<\nCc: ok@example.org\n",
			want: []string{"ok@example.org"}, problem: "Cc "},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			raw := "From: a@example.com\n" + tc.header + "Subject: hi\n\nhello\n"
			e, err := Parse(context.Background(), strings.NewReader(raw), Options{})
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, a := range e.Cc {
				if a.Name != "" {
					got = append(got, a.Name+" <"+a.Address+">")
				} else {
					got = append(got, a.Address)
				}
			}
			if strings.Join(got, "|") != strings.Join(tc.want, "|") {
				t.Errorf("Cc = %q, want %q", got, tc.want)
			}
			if (tc.problem != "") != hasProblem(e, tc.problem) || (tc.problem == "" && len(e.Problems) > 0) {
				t.Errorf("Problems %q, want one with %q", e.Problems, tc.problem)
			}
		})
	}
}
