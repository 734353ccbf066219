package main

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"testing"
)

// TestDaemonMediaRoundTrip sends an email with every kind of attachment
// through the inbound path; the fake Userlike downloads every media URL and
// the hashes must equal the originals.
func TestDaemonMediaRoundTrip(t *testing.T) {
	e := newTestEnv(t, "")
	rng := rand.New(rand.NewPCG(1, 2))
	big := make([]byte, 20<<20)
	for i := range big {
		big[i] = byte(rng.UintN(256))
	}
	pdf := []byte("%PDF-1.4\n% test document\n" + strings.Repeat("0 0 obj\n", 500))
	png := append([]byte("\x89PNG\r\n\x1a\n"), make([]byte, 300)...)
	forwarded := "From: Bob <bob@example.test>\r\nTo: jane@example.test\r\nSubject: Original offer\r\nMessage-ID: <offer@example.test>\r\n\r\nThe offer is 10% off.\r\n"
	b64 := func(b []byte) string { return wrap(base64.StdEncoding.EncodeToString(b)) }
	raw := "Authentication-Results: mx.example.test; dmarc=pass header.from=example.test\n" +
		"From: Jane Doe <jane@example.test>\nTo: support@example.test\nSubject: Files\nMessage-ID: <media@example.test>\n" +
		"MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=outer\n\n" +
		"--outer\nContent-Type: multipart/related; boundary=rel\n\n" +
		"--rel\nContent-Type: multipart/alternative; boundary=alt\n\n" +
		"--alt\nContent-Type: text/plain; charset=utf-8\n\nHere are the files. [image]\n" +
		"--alt\nContent-Type: text/html; charset=utf-8\n\n<p>Here are the files. <img src=\"cid:logo@example.test\"></p>\n" +
		"--alt--\n" +
		"--rel\nContent-Type: image/png\nContent-ID: <logo@example.test>\nContent-Disposition: inline\nContent-Transfer-Encoding: base64\n\n" + b64(png) + "\n" +
		"--rel--\n" +
		"--outer\nContent-Type: application/pdf; name=\"offer.pdf\"\nContent-Disposition: attachment; filename=\"offer.pdf\"\nContent-Transfer-Encoding: base64\n\n" + b64(pdf) + "\n" +
		"--outer\nContent-Type: message/rfc822\nContent-Disposition: attachment\n\n" + strings.ReplaceAll(forwarded, "\r\n", "\n") + "\n" +
		"--outer\nContent-Type: application/octet-stream\nContent-Disposition: attachment; filename*=iso-8859-1''%C4rger%FCbersicht.bin\nContent-Transfer-Encoding: base64\n\n" + b64(big) + "\n" +
		"--outer--\n"
	e.deliver(raw)
	e.start()
	posts := e.ul.waitPosts(5)
	if posts[0].Text == "" || posts[0].URL != "" {
		t.Fatalf("first post %+v, want the text", posts[0])
	}
	sum := func(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }
	fwdSum := sum([]byte(strings.ReplaceAll(strings.ReplaceAll(forwarded, "\r\n", "\n"), "\n", "\r\n")))
	want := []struct{ name, sha, ctype string }{
		{"", sum(png), "image/png"},
		{"offer.pdf", sum(pdf), "application/pdf"},
		{".eml", fwdSum, "message/rfc822"},
		{"%C3%84rger%C3%BCbersicht.bin", sum(big), "application/octet-stream"},
	}
	for i, w := range want {
		p := posts[i+1]
		if p.URL == "" || !strings.Contains(p.URL, w.name) {
			t.Errorf("post %d = %+v, want a media URL with %q", i+1, p, w.name)
			continue
		}
		got, resp := download(t, p.URL)
		if resp.StatusCode != http.StatusOK || got != w.sha {
			t.Errorf("%s: status %d sha256 %s, want 200 and %s", p.URL, resp.StatusCode, got, w.sha)
		}
		if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, w.ctype) {
			t.Errorf("%s: Content-Type %q, want %s", w.name, ct, w.ctype)
		}
		if resp.Header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("%s: no nosniff", w.name)
		}
	}
	// A Range request on the big file.
	req, _ := http.NewRequest(http.MethodGet, posts[4].URL, nil)
	req.Header.Set("Range", "bytes=100-199")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusPartialContent || resp.ContentLength != 100 {
		t.Errorf("range: %d, %d bytes", resp.StatusCode, resp.ContentLength)
	}
	// An expired URL is refused.
	expired := posts[1].URL
	i := strings.Index(expired, "exp=")
	j := strings.Index(expired[i:], "&")
	expired = expired[:i] + fmt.Sprintf("exp=%d", 1000) + expired[i+j:]
	if _, resp := download(t, expired); resp.StatusCode != http.StatusForbidden {
		t.Errorf("expired URL: %d, want 403", resp.StatusCode)
	}
}
