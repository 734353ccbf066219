package mailparse

import (
	"bytes"
	"context"
	"encoding/base64"
	"io"
	"runtime"
	"strings"
	"testing"
)

// discardSink reads attachments and keeps nothing.
type discardSink struct{}

// Put implements AttachmentSink.
func (discardSink) Put(_ context.Context, _ *Attachment, r io.Reader) (string, error) {
	_, err := io.Copy(io.Discard, r)
	return "discarded", err
}

// typicalTextMail builds a ~10 KB multipart/alternative support email.
func typicalTextMail() []byte {
	var b strings.Builder
	b.WriteString(crlf(`Received: from mx.example.com (mx.example.com [192.0.2.1]) by mail.example.org with ESMTPS id abc123
	for <support@example.org>; Tue, 03 Mar 2026 10:15:00 +0100
DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=example.com; s=sel; h=from:to:subject:date:message-id; bh=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=; b=dGVzdHNpZ25hdHVyZXRlc3RzaWduYXR1cmV0ZXN0c2lnbmF0dXJl
From: =?UTF-8?Q?J=C3=BCrgen_M=C3=BCller?= <juergen@example.com>
To: Support <support@example.org>
Subject: =?UTF-8?Q?Re:_Frage_zur_Rechnung_=E2=80=93_Kundennummer_4711?=
Date: Tue, 03 Mar 2026 10:15:00 +0100
Message-ID: <bench-1@example.com>
In-Reply-To: <ticket-99@mailgate.example.org>
References: <ticket-98@mailgate.example.org> <ticket-99@mailgate.example.org>
MIME-Version: 1.0
Content-Type: multipart/alternative; boundary="alt"

--alt
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: quoted-printable

`))
	line := "Sehr geehrte Damen und Herren, vielen Dank f=C3=BCr Ihre schnelle Antwort.=\r\n Ich habe noch eine Frage.\r\n"
	for b.Len() < 5<<10 {
		b.WriteString(line)
	}
	b.WriteString(crlf("\n--alt\nContent-Type: text/html; charset=utf-8\nContent-Transfer-Encoding: quoted-printable\n\n"))
	for b.Len() < 10<<10 {
		b.WriteString("<p>Sehr geehrte Damen und Herren, vielen Dank f=C3=BCr Ihre Antwort.</p>\r\n")
	}
	b.WriteString("\r\n--alt--\r\n")
	return []byte(b.String())
}

func BenchmarkParse(b *testing.B) {
	cases := []struct {
		name string
		raw  []byte
	}{
		{"text-10KB", typicalTextMail()},
		{"attachment-500KB", []byte(attachmentsMail(seq(500<<10, 7)))},
	}
	for _, bc := range cases {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(bc.raw)))
			for b.Loop() {
				e, err := Parse(context.Background(), bytes.NewReader(bc.raw), Options{Sink: discardSink{}})
				if err != nil || len(e.Problems) != 0 {
					b.Fatalf("Parse: %v %q", err, e.Problems)
				}
			}
		})
	}
}

// base64Stream generates n pseudo-random bytes as a base64 body with
// 76-character lines, without holding them in memory.
type base64Stream struct {
	left int
	x    uint32
	raw  [57]byte
	buf  [78]byte
	line []byte
}

// Read implements io.Reader.
func (s *base64Stream) Read(p []byte) (int, error) {
	if len(s.line) == 0 {
		if s.left == 0 {
			return 0, io.EOF
		}
		raw := s.raw[:min(57, s.left)]
		for i := range raw {
			s.x = s.x*1664525 + 1013904223
			raw[i] = byte(s.x >> 24)
		}
		s.left -= len(raw)
		n := base64.StdEncoding.EncodedLen(len(raw))
		base64.StdEncoding.Encode(s.buf[:n], raw)
		s.buf[n], s.buf[n+1] = '\r', '\n'
		s.line = s.buf[:n+2]
	}
	n := copy(p, s.line)
	s.line = s.line[n:]
	return n, nil
}

// heapSink discards attachments and samples the heap every MiB read.
type heapSink struct{ peak uint64 }

// Put implements AttachmentSink.
func (h *heapSink) Put(_ context.Context, _ *Attachment, r io.Reader) (string, error) {
	buf := make([]byte, 32<<10)
	var ms runtime.MemStats
	read := 0
	for {
		n, err := r.Read(buf)
		read += n
		if read >= 1<<20 {
			read = 0
			runtime.ReadMemStats(&ms)
			h.peak = max(h.peak, ms.HeapAlloc)
		}
		if err == io.EOF {
			return "discarded", nil
		}
		if err != nil {
			return "", err
		}
	}
}

// BenchmarkParse25MiBAttachment streams a 25 MiB attachment (about 34 MB
// of base64) generated on the fly to a discarding sink and reports the
// peak heap seen while streaming: it stays at a few MiB, showing that the
// body is never held in memory.
func BenchmarkParse25MiBAttachment(b *testing.B) {
	const size = 25 << 20
	head := crlf("From: a@example.com\nSubject: big\nMessage-ID: <big@example.com>\nContent-Type: multipart/mixed; boundary=\"m\"\n\n--m\nContent-Type: text/plain\n\nbig file attached\n--m\nContent-Type: application/octet-stream\nContent-Disposition: attachment; filename=\"big.bin\"\nContent-Transfer-Encoding: base64\n\n")
	tail := "--m--\r\n"
	sink := &heapSink{}
	b.ReportAllocs()
	runtime.GC()
	for b.Loop() {
		r := io.MultiReader(strings.NewReader(head), &base64Stream{left: size, x: 1}, strings.NewReader(tail))
		e, err := Parse(context.Background(), r, Options{Sink: sink})
		if err != nil {
			b.Fatal(err)
		}
		if a := e.Attachments[0]; a.Size != size || a.Skipped != "" {
			b.Fatalf("attachment = %+v", a)
		}
	}
	b.ReportMetric(float64(sink.peak)/(1<<20), "peak-heap-MiB")
	b.SetBytes(size)
}

// BenchmarkNormaliseBytes normalises 11 KB of CRLF text lines of up to 72
// characters, the text part of a bench mix mail; one op is one part.
func BenchmarkNormaliseBytes(b *testing.B) {
	var sb strings.Builder
	for sb.Len() < 11000 {
		sb.WriteString("please could you check the delivery of my parcel again today thanks \r\n")
	}
	in := []byte(sb.String())
	buf := make([]byte, len(in))
	b.SetBytes(int64(len(in)))
	for b.Loop() {
		copy(buf, in)
		normaliseBytes(buf)
	}
}
