package mailtext

import (
	"strings"
	"testing"
)

func TestHTMLToText(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want string
	}{
		{
			name: "paragraphs and line breaks",
			in:   "<p>Hello,</p><p>first line<br>second line</p>",
			want: "Hello,\n\nfirst line\nsecond line",
		},
		{
			name: "links keep their target",
			in:   `<p>See <a href="https://example.com/help">our help</a>, or write to <a href="mailto:help@example.com">help@example.com</a>.</p>`,
			want: "See our help (https://example.com/help), or write to help@example.com.",
		},
		{
			name: "lists",
			in:   "<p>Steps:</p><ul><li>unplug</li><li>wait</li></ul>",
			want: "Steps:\n\n* unplug\n* wait",
		},
		{
			name: "script style and head dropped",
			in:   "<html><head><title>Secret title</title><style>p{color:red}</style></head><body><script>alert('x')</script><p>Visible</p><style>.a{}</style></body></html>",
			want: "Visible",
		},
		{
			name: "table rows become lines",
			in:   "<table><tr><th>Item</th><th>Qty</th></tr><tr><td>Router</td><td>1</td></tr><tr><td>Cable</td><td>2</td></tr></table>",
			want: "Item Qty\nRouter 1\nCable 2",
		},
		{
			name: "inline spans do not split words",
			in:   `<p class="MsoNormal"><span lang="DE">Rech</span><span>nung</span> <b>Nr.</b> <span style="color:red">4711</span><o:p></o:p></p>`,
			want: "Rechnung Nr. 4711",
		},
		{
			name: "no-break spaces and empty paragraphs",
			in:   "<p>Hi&nbsp;there</p><p>&nbsp;</p><p>&nbsp;</p><p>Bye</p>",
			want: "Hi there\n\nBye",
		},
		{
			name: "divs",
			in:   "<div>one</div><div>two</div><div><br></div><div>three</div>",
			want: "one\ntwo\n\nthree",
		},
		{
			name: "blockquote is quoted",
			in:   "<p>Answer</p><blockquote>question</blockquote>",
			want: "Answer\n\n>\n> question",
		},
		{
			name: "entities",
			in:   "<p>a &lt; b &amp;&amp; c &gt; d</p>",
			want: "a < b && c > d",
		},
		{name: "empty", in: "", want: ""},
		{name: "plain text", in: "just text", want: "just text"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := HTMLToText(tc.in)
			if err != nil {
				t.Fatalf("HTMLToText: %v", err)
			}
			if got != tc.want {
				t.Errorf("HTMLToText =\n%q\nwant\n%q", got, tc.want)
			}
		})
	}
}

func TestHTMLToTextDeeplyNested(t *testing.T) {
	in := "<html><head><style>x{}</style></head><body><p>Hello</p>" + strings.Repeat("<font>", 600) + "old mailer<br>second line</body></html>"
	got, err := HTMLToText(in)
	if err != nil {
		t.Fatalf("HTMLToText: %v", err)
	}
	if want := "Hello\nold mailer\nsecond line"; got != want {
		t.Errorf("HTMLToText = %q, want %q", got, want)
	}
	got, trimmed, err := HTMLToTextTrimmed(in)
	if err != nil || trimmed || !strings.Contains(got, "old mailer") {
		t.Errorf("HTMLToTextTrimmed = %q, %v, %v", got, trimmed, err)
	}
}

func TestHTMLToTextTrimmed(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    string
		trimmed bool
	}{
		{
			name: "gmail quote",
			in: `<div dir="ltr">Thanks, it works.</div><br><div class="gmail_quote gmail_quote_container"><div dir="ltr" class="gmail_attr">` +
				`On Tue, 3 Mar 2026 at 10:15, Support &lt;<a href="mailto:support@example.com">support@example.com</a>&gt; wrote:<br></div>` +
				`<blockquote class="gmail_quote" style="margin:0px 0px 0px 0.8ex">Please restart the router.</blockquote></div>`,
			want:    "Thanks, it works.",
			trimmed: true,
		},
		{
			name: "apple mail cite",
			in: `<html><body dir="auto"><div dir="ltr">Yes, tomorrow is fine.</div><div dir="ltr"><br><blockquote type="cite">` +
				`On 3. Mar 2026, at 10:15, Support &lt;support@example.com&gt; wrote:<br><br></blockquote></div>` +
				`<blockquote type="cite"><div dir="ltr">Does tomorrow work?</div></blockquote></body></html>`,
			want:    "Yes, tomorrow is fine.",
			trimmed: true,
		},
		{
			name: "thunderbird cite with prefix",
			in: `<p>Done.</p><div class="moz-cite-prefix">On 3/3/26 10:15, Support wrote:<br></div>` +
				`<blockquote type="cite" cite="mid:1@example.com">Please confirm.</blockquote>`,
			want:    "Done.",
			trimmed: true,
		},
		{
			name: "interleaved apple reply keeps the quote that text answers",
			in:   `<div>Hi,</div><blockquote type="cite">What is your order number?</blockquote><div>It is 4711.</div>`,
			want: "Hi,\n\n>\n> What is your order number?\n\nIt is 4711.", trimmed: false,
		},
		{
			name: "interleaved reply drops the trailing quote and keeps the answered one",
			in: `<div>Hi,</div><blockquote type="cite">Which colour?</blockquote><div>Blue.</div>` +
				`<blockquote type="cite">Anything else?<br>Support</blockquote><div class="gmail_signature">Jane Doe</div>`,
			want: "Hi,\n\n>\n> Which colour?\n\nBlue.\nJane Doe", trimmed: true,
		},
		{
			name: "quote followed only by a tracker mark is trailing",
			in:   `<div>Thanks.</div><div class="gmail_quote">On Tue, Support wrote:<blockquote class="gmail_quote">Hi</blockquote></div><div>&#x1427;&#x200b;</div>`,
			want: "Thanks.", trimmed: true,
		},
		{
			name: "gmail forward below text is kept",
			in: `<div dir="ltr">Can you help?<br><br><div class="gmail_quote"><div dir="ltr" class="gmail_attr">---------- Forwarded message ---------<br>` +
				`From: Shop &lt;shop@example.com&gt;<br>Subject: Your order<br></div><br><div>Your order has shipped.</div></div></div>`,
			want:    "Can you help?\n\n---------- Forwarded message ---------\nFrom: Shop <shop@example.com>\nSubject: Your order\n\nYour order has shipped.",
			trimmed: false,
		},
		{
			name: "apple mail forward below text is kept",
			in: `<html><body dir="auto"><div dir="ltr">Is this real?</div><div dir="ltr"><br><div dir="ltr">Begin forwarded message:</div><br class="Apple-interchange-newline">` +
				`<blockquote type="cite"><div><b>From: </b>Bank &lt;service@bank.example&gt;<br><b>Subject: </b>Verify</div><br><div>Please verify.</div></blockquote></div></body></html>`,
			want:    "Is this real?\n\nBegin forwarded message:\n\n>\n> From: Bank <service@bank.example>\n> Subject: Verify\n>\n> Please verify.\n>",
			trimmed: false,
		},
		{
			name: "outlook web divRplyFwdMsg",
			in: `<div class="elementToProof">Invoice attached.</div><div id="appendonsend"></div>` +
				`<hr style="display:inline-block;width:98%" tabindex="-1"><div id="divRplyFwdMsg" dir="ltr"><font face="Calibri"><b>From:</b> Support &lt;support@example.com&gt;<br>` +
				`<b>Sent:</b> Tuesday, March 3, 2026 10:15<br><b>To:</b> Jane<br><b>Subject:</b> Invoice</font><div>&nbsp;</div></div>` +
				`<div>Could you send the invoice?</div>`,
			want:    "Invoice attached.",
			trimmed: true,
		},
		{
			name: "outlook desktop border-top header",
			in: `<div class="WordSection1"><p class="MsoNormal">Here it is.<o:p></o:p></p><p class="MsoNormal"><o:p>&nbsp;</o:p></p>` +
				`<div><div style="border:none;border-top:solid #E1E1E1 1.0pt;padding:3.0pt 0cm 0cm 0cm"><p class="MsoNormal"><b>From:</b> Support &lt;support@example.com&gt;<br>` +
				`<b>Sent:</b> Tuesday, March 3, 2026 10:15 AM<br><b>To:</b> Jane<br><b>Subject:</b> Invoice<o:p></o:p></p></div></div>` +
				`<p class="MsoNormal"><o:p>&nbsp;</o:p></p><p class="MsoNormal">Could you send the invoice?<o:p></o:p></p></div>`,
			want:    "Here it is.",
			trimmed: true,
		},
		{
			name: "gmail forward only is kept",
			in: `<div dir="ltr"><br><br><div class="gmail_quote"><div dir="ltr" class="gmail_attr">---------- Forwarded message ---------<br>` +
				`From: Shop &lt;shop@example.com&gt;<br>Subject: Your order<br></div><br><div>Your order has shipped.</div></div></div>`,
			want:    "---------- Forwarded message ---------\nFrom: Shop <shop@example.com>\nSubject: Your order\n\nYour order has shipped.",
			trimmed: false,
		},
		{
			name:    "no quote",
			in:      `<p>Just a question.</p>`,
			want:    "Just a question.",
			trimmed: false,
		},
		{
			name:    "plain blockquote without cite is kept",
			in:      `<p>As the manual says:</p><blockquote>Unplug it.</blockquote>`,
			want:    "As the manual says:\n\n>\n> Unplug it.",
			trimmed: false,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, trimmed, err := HTMLToTextTrimmed(tc.in)
			if err != nil {
				t.Fatalf("HTMLToTextTrimmed: %v", err)
			}
			if got != tc.want {
				t.Errorf("text =\n%q\nwant\n%q", got, tc.want)
			}
			if trimmed != tc.trimmed {
				t.Errorf("trimmed = %v, want %v", trimmed, tc.trimmed)
			}
		})
	}
}

func BenchmarkHTMLToText(b *testing.B) {
	var sb strings.Builder
	sb.WriteString(`<html><head><style>p{margin:0}</style></head><body><div class="WordSection1">`)
	for i := range 60 {
		sb.WriteString(`<p class="MsoNormal"><span lang="EN-US">Line `)
		sb.WriteString(strings.Repeat("w", i%20))
		sb.WriteString(` with <a href="https://example.com/x">a link</a> and <b>bold</b> text.<o:p></o:p></span></p>`)
	}
	sb.WriteString(`<table><tr><td>a</td><td>b</td></tr><tr><td>c</td><td>d</td></tr></table></div></body></html>`)
	in := sb.String()
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := HTMLToText(in); err != nil {
			b.Fatal(err)
		}
	}
}
