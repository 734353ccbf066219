//go:build e2e

package e2e

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"math/rand/v2"
	"strings"
)

// hostileMail is one malformed email of the hostile corpus.
type hostileMail struct {
	// Name says what is wrong with it; it is also its marker
	// ("bad-NAME") in the subject and body where those exist.
	Name string
	Raw  []byte
}

// hostileSender is the From address of hostile mail number n.
func hostileSender(n int) string { return fmt.Sprintf("hostile%02d@example.test", n) }

// hostileCorpus generates the malformed emails: broken MIME structure,
// broken encodings, lying charsets, nesting bombs, oversized messages and
// header lines, NUL bytes, missing and duplicated identity headers, and
// plain garbage. huge is the size of the one message meant to exceed
// media.max_message_size. Every call makes the same structure with fresh
// random filler.
func hostileCorpus(huge int) []hostileMail {
	var out []hostileMail
	add := func(name string, raw []byte) {
		out = append(out, hostileMail{Name: name, Raw: raw})
	}
	// head is a plausible header block for mail n, without the final
	// blank line and without Content-Type.
	head := func(name string, extra ...string) string {
		n := len(out) + 1
		var b strings.Builder
		fmt.Fprintf(&b, "From: Hostile %d <%s>\r\n", n, hostileSender(n))
		fmt.Fprintf(&b, "To: <%s>\r\n", supportUser)
		fmt.Fprintf(&b, "Subject: Hostile bad-%s\r\n", name)
		fmt.Fprintf(&b, "Date: Mon, 23 Nov 2026 10:%02d:00 +0000\r\n", n%60)
		fmt.Fprintf(&b, "Message-ID: <bad-%s-%s@hostile.example.test>\r\n", name, randomToken())
		b.WriteString("MIME-Version: 1.0\r\n")
		for _, e := range extra {
			b.WriteString(e + "\r\n")
		}
		return b.String()
	}
	text := func(name string) string {
		return fmt.Sprintf("This is hostile email bad-%s. Please handle it gracefully.", name)
	}

	// --- MIME structure
	add("boundary-mismatch", []byte(head("boundary-mismatch", `Content-Type: multipart/mixed; boundary="declared"`)+
		"\r\n--actual\r\nContent-Type: text/plain\r\n\r\n"+text("boundary-mismatch")+"\r\n--actual--\r\n"))
	add("boundary-unterminated", []byte(head("boundary-unterminated", `Content-Type: multipart/mixed; boundary="b1"`)+
		"\r\n--b1\r\nContent-Type: text/plain\r\n\r\n"+text("boundary-unterminated")+"\r\n--b1\r\nContent-Type: application/octet-stream\r\n\r\nabc"))
	add("boundary-missing-param", []byte(head("boundary-missing-param", `Content-Type: multipart/mixed`)+
		"\r\n--x\r\nContent-Type: text/plain\r\n\r\n"+text("boundary-missing-param")+"\r\n--x--\r\n"))
	add("boundary-empty", []byte(head("boundary-empty", `Content-Type: multipart/mixed; boundary=""`)+
		"\r\n--\r\nContent-Type: text/plain\r\n\r\n"+text("boundary-empty")+"\r\n----\r\n"))
	add("boundary-reused-by-child", []byte(head("boundary-reused-by-child", `Content-Type: multipart/mixed; boundary="same"`)+
		"\r\n--same\r\nContent-Type: multipart/alternative; boundary=\"same\"\r\n\r\n--same\r\nContent-Type: text/plain\r\n\r\n"+
		text("boundary-reused-by-child")+"\r\n--same--\r\n--same--\r\n"))
	add("multipart-no-parts", []byte(head("multipart-no-parts", `Content-Type: multipart/alternative; boundary="z"`)+
		"\r\nonly a preamble, bad-multipart-no-parts\r\n--z--\r\n"))
	add("boundary-70-plus", []byte(head("boundary-70-plus", `Content-Type: multipart/mixed; boundary="`+strings.Repeat("b", 500)+`"`)+
		"\r\n--"+strings.Repeat("b", 500)+"\r\nContent-Type: text/plain\r\n\r\n"+text("boundary-70-plus")+"\r\n--"+strings.Repeat("b", 500)+"--\r\n"))
	{
		// 200 levels of multipart/mixed.
		var b strings.Builder
		b.WriteString(head("nesting-bomb", `Content-Type: multipart/mixed; boundary="n0"`) + "\r\n")
		for i := 0; i < 200; i++ {
			fmt.Fprintf(&b, "--n%d\r\nContent-Type: multipart/mixed; boundary=\"n%d\"\r\n\r\n", i, i+1)
		}
		fmt.Fprintf(&b, "--n200\r\nContent-Type: text/plain\r\n\r\n%s\r\n--n200--\r\n", text("nesting-bomb"))
		for i := 199; i >= 0; i-- {
			fmt.Fprintf(&b, "--n%d--\r\n", i)
		}
		add("nesting-bomb", []byte(b.String()))
	}
	{
		// 100 levels of message/rfc822.
		inner := "From: <inner@example.test>\r\nSubject: inner\r\nContent-Type: text/plain\r\n\r\n" + text("rfc822-nesting") + "\r\n"
		for i := 0; i < 100; i++ {
			inner = fmt.Sprintf("From: <inner%d@example.test>\r\nSubject: level %d\r\nContent-Type: message/rfc822\r\n\r\n%s", i, i, inner)
		}
		add("rfc822-nesting", []byte(head("rfc822-nesting", "Content-Type: message/rfc822")+"\r\n"+inner))
	}
	{
		// 5000 tiny attachments, far over media.max_count.
		var b strings.Builder
		b.WriteString(head("attachment-flood", `Content-Type: multipart/mixed; boundary="af"`) + "\r\n")
		fmt.Fprintf(&b, "--af\r\nContent-Type: text/plain\r\n\r\n%s\r\n", text("attachment-flood"))
		for i := 0; i < 5000; i++ {
			fmt.Fprintf(&b, "--af\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=\"f%d.bin\"\r\nContent-Transfer-Encoding: base64\r\n\r\nAAEC\r\n", i)
		}
		b.WriteString("--af--\r\n")
		add("attachment-flood", []byte(b.String()))
	}
	add("content-type-garbage", plainNoCT(head("content-type-garbage", "Content-Type: text"), text("content-type-garbage")))
	add("content-type-params-garbage", plainNoCT(head("content-type-params-garbage", `Content-Type: text/plain; ; ;=; charset="utf-8; name==="`), text("content-type-params-garbage")))
	add("alternative-html-only-bomb", []byte(head("alternative-html-only-bomb", "Content-Type: text/html; charset=utf-8")+"\r\n<p>"+text("alternative-html-only-bomb")+"</p>"+
		strings.Repeat("<div>", 20000)+"deep"+strings.Repeat("</div>", 20000)+"\r\n"))
	add("html-script-only", []byte(head("html-script-only", "Content-Type: text/html; charset=utf-8")+
		"\r\n<html><head><style>p{}</style><script>alert('bad-html-script-only')</script></head><body></body></html>\r\n"))
	add("report-without-parts", []byte(head("report-without-parts", `Content-Type: multipart/report; report-type=delivery-status; boundary="r"`)+
		"\r\n--r--\r\n"))
	add("winmail-garbage", []byte(head("winmail-garbage", `Content-Type: multipart/mixed; boundary="w"`)+
		"\r\n--w\r\nContent-Type: text/plain\r\n\r\n"+text("winmail-garbage")+"\r\n--w\r\nContent-Type: application/ms-tnef; name=\"winmail.dat\"\r\nContent-Transfer-Encoding: base64\r\n\r\n"+
		base64.StdEncoding.EncodeToString(randomBytes(3000))+"\r\n--w--\r\n"))

	// --- transfer encodings
	add("base64-invalid", []byte(head("base64-invalid", "Content-Type: text/plain; charset=utf-8", "Content-Transfer-Encoding: base64")+
		"\r\n!!!! this is not base64 at all: bad-base64-invalid ####\r\n"))
	add("base64-truncated", []byte(head("base64-truncated", "Content-Type: text/plain; charset=utf-8", "Content-Transfer-Encoding: base64")+
		"\r\n"+strings.TrimRight(base64.StdEncoding.EncodeToString([]byte(text("base64-truncated"))), "=")[:30]+"\r\n"))
	add("base64-attachment-garbage", []byte(head("base64-attachment-garbage", `Content-Type: multipart/mixed; boundary="g"`)+
		"\r\n--g\r\nContent-Type: text/plain\r\n\r\n"+text("base64-attachment-garbage")+
		"\r\n--g\r\nContent-Type: application/pdf; name=\"x.pdf\"\r\nContent-Disposition: attachment; filename=\"x.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\n%%%% ^^^^ not base64 ****\r\n--g--\r\n"))
	add("base64-whitespace", []byte(head("base64-whitespace", "Content-Type: text/plain; charset=utf-8", "Content-Transfer-Encoding: base64")+
		"\r\n"+spaced(base64.StdEncoding.EncodeToString([]byte(text("base64-whitespace"))))+"\r\n"))
	add("qp-invalid", []byte(head("qp-invalid", "Content-Type: text/plain; charset=utf-8", "Content-Transfer-Encoding: quoted-printable")+
		"\r\n"+text("qp-invalid")+" =ZZ =4 =\r\n=XY==\r\n"))
	add("cte-unknown", []byte(head("cte-unknown", "Content-Type: text/plain; charset=utf-8", "Content-Transfer-Encoding: x-rot13-compressed")+
		"\r\n"+text("cte-unknown")+"\r\n"))
	add("pdf-that-is-not", []byte(head("pdf-that-is-not", `Content-Type: multipart/mixed; boundary="p"`)+
		"\r\n--p\r\nContent-Type: text/plain\r\n\r\n"+text("pdf-that-is-not")+
		"\r\n--p\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename=\"invoice.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\n"+
		base64.StdEncoding.EncodeToString(randomBytes(5000))+"\r\n--p--\r\n"))

	// --- charsets
	add("charset-lies-utf8", []byte(head("charset-lies-utf8", "Content-Type: text/plain; charset=utf-8", "Content-Transfer-Encoding: 8bit")+
		"\r\n"+text("charset-lies-utf8")+" Gr\xfc\xdfe aus M\xfcnchen \xff\xfe\r\n"))
	add("charset-lies-iso2022jp", []byte(head("charset-lies-iso2022jp", "Content-Type: text/plain; charset=iso-2022-jp", "Content-Transfer-Encoding: 8bit")+
		"\r\n"+text("charset-lies-iso2022jp")+" 日本語のテキスト \x1b$B\x1b(B\x1b$\r\n"))
	add("charset-unknown", []byte(head("charset-unknown", "Content-Type: text/plain; charset=x-klingon-9", "Content-Transfer-Encoding: 8bit")+
		"\r\n"+text("charset-unknown")+" \xc0\xc1\xf5\r\n"))
	add("charset-utf16-odd", []byte(head("charset-utf16-odd", "Content-Type: text/plain; charset=utf-16", "Content-Transfer-Encoding: 8bit")+
		"\r\n"+text("charset-utf16-odd")+"\x00\xd8\x00\r\n"))
	add("utf8-overlong-surrogates", []byte(head("utf8-overlong-surrogates", "Content-Type: text/plain; charset=utf-8", "Content-Transfer-Encoding: 8bit")+
		"\r\n"+text("utf8-overlong-surrogates")+" \xc0\xaf \xed\xa0\x80 \xf4\x90\x80\x80\r\n"))
	add("encoded-word-garbage", plainNoCT(strings.Replace(head("encoded-word-garbage"), "Subject: Hostile bad-encoded-word-garbage",
		"Subject: =?utf-8?B?!!!notbase64?= =?x-unknown?Q?=FF=FE?= =?utf-8?Q?bad-encoded-word-garbage", 1)+"Content-Type: text/plain\r\n", text("encoded-word-garbage")))
	add("from-name-unknown-charset", plainNoCT(strings.Replace(head("from-name-unknown-charset"), "From: Hostile", "From: =?x-klingon?B?AAAA?= Hostile", 1)+"Content-Type: text/plain\r\n", text("from-name-unknown-charset")))
	add("ansi-escapes", plainNoCT(strings.Replace(head("ansi-escapes"), "Subject: Hostile", "Subject: \x1b[31mRED\x1b[0m\x07 Hostile", 1)+"Content-Type: text/plain\r\n",
		text("ansi-escapes")+" \x1b]0;title\x07 \x1b[2J"))

	// --- sizes
	add("header-line-100k", plainNoCT(head("header-line-100k", "X-Long: "+strings.Repeat("x", 100*1024))+"Content-Type: text/plain\r\n", text("header-line-100k")))
	add("subject-100k", plainNoCT(strings.Replace(head("subject-100k"), "Subject: Hostile bad-subject-100k", "Subject: Hostile bad-subject-100k "+strings.Repeat("s", 100*1024), 1)+"Content-Type: text/plain\r\n", text("subject-100k")))
	add("header-flood", plainNoCT(head("header-flood", strings.TrimSuffix(strings.Repeat("X-Flood: y\r\n", 20000), "\r\n"))+"Content-Type: text/plain\r\n", text("header-flood")))
	add("folded-header-10k-lines", plainNoCT(head("folded-header-10k-lines", "X-Folded: start"+strings.Repeat("\r\n continued", 10000))+"Content-Type: text/plain\r\n", text("folded-header-10k-lines")))
	add("body-line-1mib", []byte(head("body-line-1mib", "Content-Type: text/plain; charset=utf-8")+"\r\n"+text("body-line-1mib")+" "+strings.Repeat("w", 1<<20)+"\r\n"))
	add("references-10k", plainNoCT(head("references-10k", "References: "+refs(10000), "In-Reply-To: <<<>>> not an id @@@")+"Content-Type: text/plain\r\n", text("references-10k")))
	add("message-id-10k", plainNoCT(strings.Replace(head("message-id-10k"), "Message-ID: <bad-message-id-10k", "Message-ID: <"+strings.Repeat("m", 10*1024)+"-bad-message-id-10k", 1)+"Content-Type: text/plain\r\n", text("message-id-10k")))
	add("filename-10k", []byte(head("filename-10k", `Content-Type: multipart/mixed; boundary="fn"`)+
		"\r\n--fn\r\nContent-Type: text/plain\r\n\r\n"+text("filename-10k")+"\r\n--fn\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=\""+
		strings.Repeat("n", 10*1024)+".txt\"\r\n\r\nhello\r\n--fn--\r\n"))
	add("filename-traversal", []byte(head("filename-traversal", `Content-Type: multipart/mixed; boundary="ft"`)+
		"\r\n--ft\r\nContent-Type: text/plain\r\n\r\n"+text("filename-traversal")+"\r\n--ft\r\nContent-Type: text/plain\r\nContent-Disposition: attachment; filename=\"../../../../etc/passwd\"\r\n\r\nroot:x:0:0\r\n--ft--\r\n"))
	add("rfc2231-broken", []byte(head("rfc2231-broken", `Content-Type: multipart/mixed; boundary="r2"`)+
		"\r\n--r2\r\nContent-Type: text/plain\r\n\r\n"+text("rfc2231-broken")+"\r\n--r2\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; filename*0*=utf-8''%ZZ%; filename*2=\"gap\"; filename*1*=%E2%82\r\n\r\ndata\r\n--r2--\r\n"))
	add("quote-depth-5000", []byte(head("quote-depth-5000", "Content-Type: text/plain; charset=utf-8; format=flowed")+"\r\n"+text("quote-depth-5000")+"\r\n"+
		strings.Repeat(">", 5000)+" deep quote \r\n"+strings.Repeat("> \r\n", 3000)))

	// --- NUL bytes and line ends
	add("nul-in-body", []byte(head("nul-in-body", "Content-Type: text/plain; charset=utf-8")+"\r\n"+text("nul-in-body")+" \x00\x00 after NULs \x00\r\n"))
	add("nul-in-header", plainNoCT(strings.Replace(head("nul-in-header"), "Subject: Hostile", "Subject: Hos\x00tile", 1)+"X-Nul: a\x00b\r\nContent-Type: text/plain\r\n", text("nul-in-header")))
	add("bare-cr-lines", []byte(strings.ReplaceAll(head("bare-cr-lines", "Content-Type: text/plain"), "\r\n", "\r")+"\r"+text("bare-cr-lines")+"\rline two\r"))
	add("mixed-line-ends", []byte(strings.ReplaceAll(head("mixed-line-ends", "Content-Type: text/plain"), "\r\n", "\n")+"\n"+text("mixed-line-ends")+"\r\nsecond\rthird\n"))
	add("no-header-body-separator", []byte(head("no-header-body-separator", "Content-Type: text/plain")+text("no-header-body-separator")+"\r\n"))
	add("headers-only", []byte(head("headers-only", "Content-Type: text/plain")))
	add("header-without-colon", plainNoCT(head("header-without-colon", "This is not a header line", "X-Ok: fine")+"Content-Type: text/plain\r\n", text("header-without-colon")))

	// --- identity headers
	add("no-from", plainNoCT(dropHeader(head("no-from"), "From:")+"Content-Type: text/plain\r\n", text("no-from")))
	add("from-empty-address", plainNoCT(replaceHeader(head("from-empty-address"), "From:", "From: <>")+"Content-Type: text/plain\r\n", text("from-empty-address")))
	add("from-not-an-address", plainNoCT(replaceHeader(head("from-not-an-address"), "From:", "From: this is not an address")+"Content-Type: text/plain\r\n", text("from-not-an-address")))
	add("from-group", plainNoCT(replaceHeader(head("from-group"), "From:", "From: Team: a@example.test, b@example.test;")+"Content-Type: text/plain\r\n", text("from-group")))
	add("from-two-headers", plainNoCT(head("from-two-headers", "From: <second@example.test>")+"Content-Type: text/plain\r\n", text("from-two-headers")))
	add("from-two-addresses", plainNoCT(replaceHeader(head("from-two-addresses"), "From:", "From: a@example.test, b@example.test")+"Content-Type: text/plain\r\n", text("from-two-addresses")))
	add("from-local-part-1000", plainNoCT(replaceHeader(head("from-local-part-1000"), "From:", "From: <"+strings.Repeat("l", 1000)+"@example.test>")+"Content-Type: text/plain\r\n", text("from-local-part-1000")))
	add("no-message-id", plainNoCT(dropHeader(head("no-message-id"), "Message-ID:")+"Content-Type: text/plain\r\n", text("no-message-id")))
	add("date-garbage", plainNoCT(replaceHeader(head("date-garbage"), "Date:", "Date: the day after tomorrow, 99:99")+"Content-Type: text/plain\r\n", text("date-garbage")))
	{
		// a and b: one sender, one Message-ID, Date and Subject, different
		// bodies (mailgate takes b for a copy of a); c: the same
		// Message-ID from another sender with another subject.
		id := "<dup-" + randomToken() + "@hostile.example.test>"
		dup := func(name, from, subject, body string) {
			add(name, []byte("From: <"+from+">\r\nTo: <"+supportUser+">\r\nSubject: "+subject+
				"\r\nDate: Mon, 23 Nov 2026 11:00:00 +0000\r\nMessage-ID: "+id+
				"\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"+body+"\r\n"))
		}
		dup("duplicate-message-id-a", "dup@example.test", "Same id", text("duplicate-message-id-a"))
		dup("duplicate-message-id-b", "dup@example.test", "Same id", text("duplicate-message-id-b")+" Different content, same Message-ID.")
		dup("duplicate-message-id-c", hostileSender(len(out)+1), "Same id, other sender", text("duplicate-message-id-c"))
	}

	// --- not email at all
	add("garbage-binary", randomBytes(4096))
	add("garbage-text", []byte(strings.Repeat("lorem ipsum bad-garbage-text ", 300)))
	add("only-newlines", []byte("\r\n\r\n\r\n"))
	add("single-byte", []byte("x"))

	// --- the one over media.max_message_size
	{
		var b bytes.Buffer
		b.WriteString(head("over-max-message-size", `Content-Type: multipart/mixed; boundary="big"`))
		b.WriteString("\r\n--big\r\nContent-Type: text/plain\r\n\r\n" + text("over-max-message-size") + "\r\n")
		b.WriteString("--big\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=\"big.bin\"\r\nContent-Transfer-Encoding: base64\r\n\r\n")
		line := make([]byte, 57)
		for b.Len() < huge {
			for i := range line {
				line[i] = byte(rand.N(256))
			}
			b.WriteString(base64.StdEncoding.EncodeToString(line))
			b.WriteString("\r\n")
		}
		b.WriteString("--big--\r\n")
		add("over-max-message-size", b.Bytes())
	}
	return out
}

// plainNoCT completes a header block that already has its Content-Type
// with the blank line and a body.
func plainNoCT(head, body string) []byte { return []byte(head + "\r\n" + body + "\r\n") }

// dropHeader removes the line starting with name from a header block.
func dropHeader(head, name string) string {
	var keep []string
	for _, l := range strings.SplitAfter(head, "\r\n") {
		if !strings.HasPrefix(l, name) {
			keep = append(keep, l)
		}
	}
	return strings.Join(keep, "")
}

// replaceHeader replaces the line starting with name by line.
func replaceHeader(head, name, line string) string {
	var out []string
	for _, l := range strings.SplitAfter(head, "\r\n") {
		if strings.HasPrefix(l, name) {
			l = line + "\r\n"
		}
		out = append(out, l)
	}
	return strings.Join(out, "")
}

// spaced puts white space between the characters of s.
func spaced(s string) string {
	var b strings.Builder
	for i, r := range s {
		b.WriteRune(r)
		if i%3 == 0 {
			b.WriteString(" \t")
		}
		if i%40 == 39 {
			b.WriteString("\r\n")
		}
	}
	return b.String()
}

// refs returns n message ids separated by folding white space.
func refs(n int) string {
	var b strings.Builder
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "<r%d@refs.example.test>\r\n ", i)
	}
	return strings.TrimSuffix(b.String(), "\r\n ")
}

// randomBytes returns n random bytes.
func randomBytes(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rand.N(256))
	}
	return b
}
