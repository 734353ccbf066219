package main

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"
)

// benchMail describes one generated email.
type benchMail struct {
	Marker    string // "[bm:RUN-N]", found again in the posted text
	From      string // sender address
	To        string
	Size      int    // approximate size of the plain-text body in bytes
	AttachLen int    // > 0: a PDF attachment of this many bytes
	Rand      uint64 // seed of the body text and attachment
}

// words fill the bodies; written for these benchmarks.
var words = strings.Fields(`order invoice delivery parcel account password
	refund upgrade plan subscription printer router cable screen battery
	please could you check again today tomorrow morning thanks regards
	the a my our your and but with without still since after before when
	works broken missing late twice again number reference customer`)

// marker returns the marker of mail n of a run.
func marker(run string, n int) string { return fmt.Sprintf("[bm:%s-%d]", run, n) }

// raw renders m as an RFC 5322 message with CRLF line ends.
func (m benchMail) raw() []byte {
	r := rand.New(rand.NewPCG(m.Rand, 0x6d61696c67617465))
	var b bytes.Buffer
	h := func(k, v string) { b.WriteString(k + ": " + v + "\r\n") }
	h("From", "Customer <"+m.From+">")
	h("To", "<"+m.To+">")
	h("Subject", "Question "+strings.Trim(m.Marker, "[]"))
	h("Date", time.Now().Format(time.RFC1123Z))
	h("Message-ID", fmt.Sprintf("<%016x.%s@client.example.org>", m.Rand, strings.Trim(m.Marker, "[]:")))
	h("MIME-Version", "1.0")
	var body bytes.Buffer
	body.WriteString("Hello support, " + m.Marker + "\r\n\r\n")
	line := 0
	for body.Len() < m.Size {
		w := words[r.IntN(len(words))]
		if line+len(w) > 72 {
			body.WriteString("\r\n")
			line = 0
		}
		body.WriteString(w + " ")
		line += len(w) + 1
	}
	body.WriteString("\r\n\r\nBest regards\r\nA customer\r\n")
	if m.AttachLen == 0 {
		h("Content-Type", "text/plain; charset=utf-8")
		h("Content-Transfer-Encoding", "8bit")
		b.WriteString("\r\n")
		b.Write(body.Bytes())
		return b.Bytes()
	}
	boundary := fmt.Sprintf("bm-%016x", m.Rand)
	h("Content-Type", `multipart/mixed; boundary="`+boundary+`"`)
	b.WriteString("\r\nThis is a multi-part message in MIME format.\r\n")
	b.WriteString("--" + boundary + "\r\n")
	b.WriteString("Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n")
	b.Write(body.Bytes())
	b.WriteString("--" + boundary + "\r\n")
	b.WriteString("Content-Type: application/pdf; name=\"scan.pdf\"\r\n")
	b.WriteString("Content-Disposition: attachment; filename=\"scan.pdf\"\r\n")
	b.WriteString("Content-Transfer-Encoding: base64\r\n\r\n")
	enc := base64.StdEncoding.EncodeToString(pdf(r, m.AttachLen))
	for len(enc) > 76 {
		b.WriteString(enc[:76] + "\r\n")
		enc = enc[76:]
	}
	b.WriteString(enc + "\r\n--" + boundary + "--\r\n")
	return b.Bytes()
}

// pdf returns a minimal PDF of about n bytes whose content stream is noise.
func pdf(r *rand.Rand, n int) []byte {
	noise := make([]byte, n)
	for i := 0; i+8 <= n; i += 8 {
		v := r.Uint64()
		for k := range 8 {
			noise[i+k] = byte(v >> (8 * k))
		}
	}
	var b bytes.Buffer
	b.WriteString("%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
	b.WriteString("1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n")
	b.WriteString("2 0 obj << /Type /Pages /Kids [3 0 R] /Count 1 >> endobj\n")
	b.WriteString("3 0 obj << /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 4 0 R >> endobj\n")
	fmt.Fprintf(&b, "4 0 obj << /Length %d >> stream\n", n)
	b.Write(noise)
	b.WriteString("\nendstream endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n")
	return b.Bytes()
}
