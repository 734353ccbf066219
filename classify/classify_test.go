package classify

import (
	"bufio"
	"net/mail"
	nettextproto "net/textproto"
	"strings"
	"testing"
	"unicode"

	"github.com/emersion/go-message"
	gomail "github.com/emersion/go-message/mail"
	"github.com/emersion/go-message/textproto"
)

// The header types callers hold satisfy Header.
var (
	_ Header = (*textproto.Header)(nil)
	_ Header = (*message.Header)(nil)
	_ Header = (*gomail.Header)(nil)
	_ Header = nettextproto.MIMEHeader(nil)
)

// parseHeader reads a header block written in a test.
func parseHeader(t testing.TB, raw string) *textproto.Header {
	t.Helper()
	raw = strings.ReplaceAll(strings.TrimLeft(raw, "\n"), "\n", "\r\n") + "\r\n"
	h, err := textproto.ReadHeader(bufio.NewReader(strings.NewReader(raw)))
	if err != nil {
		t.Fatalf("parse test header: %v", err)
	}
	return &h
}

const ownDomain = "@mailgate.example.net"

var testOptions = Options{
	OwnHeader: "X-Mailgate-Channel",
	IsOwnMessageID: func(id string) bool {
		return strings.HasPrefix(id, "mg.") && strings.HasSuffix(id, ownDomain)
	},
}

// human is the header of an ordinary customer mail from Outlook, with the
// X-Auto-Response-Suppress Outlook adds to mail people write.
const human = `
From: Jane Doe <jane@example.com>
To: support@shop.example
Subject: Order 1234 has not arrived
Message-ID: <AM0PR01MB1234@eurprd01.prod.outlook.com>
X-Auto-Response-Suppress: All
Thread-Topic: Order 1234 has not arrived
Content-Type: multipart/alternative; boundary="b1"
`

func TestClassify(t *testing.T) {
	tests := []struct {
		name       string
		header     string
		in         Input // Header is set from header
		opts       *Options
		want       Class
		wantReason string // checked when not empty
	}{
		// Normal mail that must stay normal.
		{name: "outlook human mail with X-Auto-Response-Suppress", header: human, want: ClassNormal},
		{name: "Auto-Submitted: no", header: human + "Auto-Submitted: no\n", want: ClassNormal},
		{name: "Auto-Submitted: No with comment", header: human + "Auto-Submitted: No (written by a person)\n", want: ClassNormal},
		{name: "customer subject with absent", header: "From: jane@example.com\nSubject: Absent item in my order\n", want: ClassNormal},
		{name: "customer subject Absentee", in: Input{Subject: "Absentee"}, want: ClassNormal},
		{name: "reply to an auto reply", in: Input{Subject: "Re: Automatic reply: Order 1234"}, want: ClassNormal},
		{name: "AW reply to an auto reply", in: Input{Subject: "AW: Abwesenheitsnotiz: Bestellung"}, want: ClassNormal},
		{name: "out of office hours question", in: Input{Subject: "Out of office hours support?"}, want: ClassNormal},
		{name: "question about automatic replies", in: Input{Subject: "Question about automatic reply settings"}, want: ClassNormal},
		{name: "missed parcel notice in Japanese", in: Input{Subject: "不在通知について"}, want: ClassNormal},
		{name: "Precedence first-class", header: human + "Precedence: first-class\n", want: ClassNormal},
		{name: "unknown Message-ID", header: human, in: Input{Subject: "x"}, want: ClassNormal},
		{name: "no options, own header ignored", header: human + "X-Mailgate-Channel: support\n", opts: &Options{}, want: ClassNormal},
		{name: "nil header", in: Input{Subject: "Hello", From: "jane@example.com"}, want: ClassNormal},
		{name: "postmaster as a domain is not the local part", in: Input{From: "jane@postmaster.example"}, want: ClassNormal},
		{name: "plain Return-Path", header: "Return-Path: <jane@example.com>\n", want: ClassNormal},

		// Own mail.
		{name: "own header", header: human + "X-Mailgate-Channel: support\n", want: ClassOwn, wantReason: "X-Mailgate-Channel present"},
		{name: "own header with empty value", header: human + "X-Mailgate-Channel: \n", want: ClassOwn},
		{name: "own Message-ID", header: "Message-ID: <mg.7f3a9c" + ownDomain + ">\n", want: ClassOwn, wantReason: "Message-ID: <mg.7f3a9c" + ownDomain + "> is ours"},
		{name: "own beats bounce", header: "X-Mailgate-Channel: support\nFrom: MAILER-DAEMON@mx.example\n", want: ClassOwn},

		// Bounces.
		{name: "From MAILER-DAEMON in header", header: "From: Mail Delivery System <MAILER-DAEMON@mx.shop.example>\n", want: ClassBounce, wantReason: "From: mailer-daemon@mx.shop.example"},
		{name: "From postmaster given", in: Input{From: "postmaster@example.org"}, want: ClassBounce},
		{name: "From Postmaster mixed case", in: Input{From: "PostMaster@example.org"}, want: ClassBounce},
		{name: "sloppy From header", header: "From: MAILER-DAEMON (Mail Delivery System)\n", want: ClassNormal},
		{name: "sloppy From header with brackets", header: "From: \"Mail Delivery Subsystem\" <MAILER-DAEMON@x.example\n", want: ClassNormal},
		{name: "sloppy From header with brackets closed", header: "From: Mail Delivery Subsystem, <MAILER-DAEMON@x.example>,\n", want: ClassBounce},
		{
			name:       "delivery status report",
			header:     "From: mail@mx.example\nContent-Type: multipart/report; report-type=delivery-status;\n boundary=\"x\"\n",
			want:       ClassBounce,
			wantReason: "Content-Type: multipart/report; report-type=delivery-status",
		},
		{name: "report type given by caller", in: Input{ContentType: "Multipart/Report"}, want: ClassBounce, wantReason: "Content-Type: multipart/report"},
		{name: "X-Failed-Recipients", header: "X-Failed-Recipients: jane@example.com\n", want: ClassBounce},
		{name: "null Return-Path header", header: "Return-Path: <>\nFrom: jane@example.com\n", want: ClassBounce, wantReason: "Return-Path: <>"},
		{name: "null Return-Path given", in: Input{ReturnPath: "< >"}, want: ClassBounce},
		{
			name:   "bounce with Auto-Submitted is a bounce",
			header: "From: MAILER-DAEMON@mx.example\nAuto-Submitted: auto-replied\nReturn-Path: <>\n",
			want:   ClassBounce,
		},

		// Automatic replies.
		{name: "Auto-Submitted auto-replied", header: human + "Auto-Submitted: auto-replied\n", want: ClassAutoReply, wantReason: "Auto-Submitted: auto-replied"},
		{name: "Auto-Submitted with parameters", header: "Auto-Submitted: auto-generated; owner-email=\"it@example.com\"\n", want: ClassAutoReply},
		{name: "Auto-Submitted upper case", header: "Auto-Submitted: AUTO-REPLIED\n", want: ClassAutoReply},
		{
			name:       "out-of-office with null Return-Path is an auto reply",
			header:     "Return-Path: <>\nAuto-Submitted: auto-replied\nFrom: Jane Doe <jane@example.com>\nSubject: Automatic reply: Order 1234\n",
			want:       ClassAutoReply,
			wantReason: "Auto-Submitted: auto-replied",
		},
		{name: "X-Autoreply", header: "X-Autoreply: yes\n", want: ClassAutoReply, wantReason: "X-Autoreply: yes"},
		{name: "X-Autorespond", header: "X-Autorespond: Thank you for your message\n", want: ClassAutoReply},
		{name: "Precedence bulk", header: "Precedence: Bulk\n", want: ClassAutoReply, wantReason: "Precedence: bulk"},
		{name: "Precedence junk", header: "Precedence: junk\n", want: ClassAutoReply},
		{name: "Precedence auto_reply", header: "Precedence: auto_reply\n", want: ClassAutoReply},
		{name: "X-Autogenerated Reply", header: "X-AutoGenerated: Reply\n", want: ClassAutoReply},
		{name: "X-Autogenerated Forward is not a reply", header: "X-AutoGenerated: Forward\n", want: ClassNormal},
		{name: "read receipt", header: "Content-Type: multipart/report; report-type=disposition-notification; boundary=x\n", want: ClassAutoReply},
		{name: "auto reply beats list", header: "Precedence: bulk\nList-Id: <news.example.com>\n", want: ClassAutoReply},

		// Out-of-office subjects.
		{name: "subject Automatic reply", in: Input{Subject: "Automatic reply: Order 1234"}, want: ClassAutoReply, wantReason: `Subject starts with "automatic reply"`},
		{name: "subject Out of Office alone", in: Input{Subject: "Out of Office"}, want: ClassAutoReply},
		{name: "subject Out of Office AutoReply", in: Input{Subject: "Out of Office AutoReply: Order"}, want: ClassAutoReply, wantReason: `Subject starts with "out of office autoreply"`},
		{name: "subject Auto-Reply in brackets", in: Input{Subject: "[Auto-Reply] Your order"}, want: ClassAutoReply},
		{name: "subject bracket not closed after phrase", in: Input{Subject: "[Auto-Reply needed] Your order"}, want: ClassNormal},
		{name: "subject Autoreply", in: Input{Subject: "Autoreply: x"}, want: ClassAutoReply},
		{name: "subject Away from the office", in: Input{Subject: "Away from the office: back Monday"}, want: ClassAutoReply},
		{name: "subject On vacation", in: Input{Subject: "On vacation"}, want: ClassAutoReply},
		{name: "subject German", in: Input{Subject: "Abwesenheitsnotiz: Ihre Bestellung"}, want: ClassAutoReply},
		{name: "subject German Automatische Antwort", in: Input{Subject: "Automatische Antwort: Bestellung 1234"}, want: ClassAutoReply},
		{name: "subject German Außer Haus upper case", in: Input{Subject: "AUSSER  HAUS"}, want: ClassAutoReply},
		{name: "subject German Außer Haus", in: Input{Subject: "Außer Haus: bis 3. Mai"}, want: ClassAutoReply},
		{name: "subject French with space before colon", in: Input{Subject: "Réponse automatique : Commande 1234"}, want: ClassAutoReply},
		{name: "subject French upper case", in: Input{Subject: "RÉPONSE AUTOMATIQUE: Commande"}, want: ClassAutoReply},
		{name: "subject French decomposed", in: Input{Subject: "Re\u0301ponse automatique: Commande"}, want: ClassAutoReply},
		{name: "subject French Absent", in: Input{Subject: "Absent: retour le 12"}, want: ClassAutoReply},
		{name: "subject French Absence du bureau", in: Input{Subject: "Absence du bureau"}, want: ClassAutoReply},
		{name: "subject Spanish", in: Input{Subject: "Respuesta automática: Pedido"}, want: ClassAutoReply},
		{name: "subject Spanish office", in: Input{Subject: "Fuera de la oficina"}, want: ClassAutoReply},
		{name: "subject Italian", in: Input{Subject: "Risposta automatica: Ordine"}, want: ClassAutoReply},
		{name: "subject Italian Fuori sede", in: Input{Subject: "Fuori sede"}, want: ClassAutoReply},
		{name: "subject Dutch", in: Input{Subject: "Automatisch antwoord: Bestelling"}, want: ClassAutoReply},
		{name: "subject Dutch Afwezig", in: Input{Subject: "Afwezig"}, want: ClassAutoReply},
		{name: "subject Portuguese", in: Input{Subject: "Resposta automática: Pedido"}, want: ClassAutoReply},
		{name: "subject Ausente", in: Input{Subject: "Ausente: volto amanhã"}, want: ClassAutoReply},
		{name: "subject Polish", in: Input{Subject: "Automatyczna odpowiedź: zamówienie"}, want: ClassAutoReply},
		{name: "subject Swedish", in: Input{Subject: "Automatiskt svar: Beställning"}, want: ClassAutoReply},
		{name: "subject Swedish Frånvaro", in: Input{Subject: "Frånvaro"}, want: ClassAutoReply},
		{name: "subject Russian", in: Input{Subject: "Автоматический ответ: заказ"}, want: ClassAutoReply},
		{name: "subject Russian out of office", in: Input{Subject: "ВНЕ ОФИСА"}, want: ClassAutoReply},
		{name: "subject Japanese full-width colon", in: Input{Subject: "自動応答：ご注文について"}, want: ClassAutoReply},
		{name: "subject Japanese 不在", in: Input{Subject: "不在: 会議中"}, want: ClassAutoReply},
		{name: "subject Japanese bracket", in: Input{Subject: "【自動返信】ご注文"}, want: ClassAutoReply},
		{name: "subject from encoded header", header: "Subject: =?UTF-8?Q?Automatische_Antwort:_Bestellung?=\n", want: ClassAutoReply},
		{name: "subject with non-breaking space", in: Input{Subject: "Out\u00a0of\u00a0Office: x"}, want: ClassAutoReply},

		// Lists.
		{name: "List-Id", header: "List-Id: Shop news <news.shop.example>\n", want: ClassList, wantReason: "List-Id: Shop news <news.shop.example>"},
		{name: "List-Unsubscribe", header: "List-Unsubscribe: <mailto:unsub@news.example>\n", want: ClassList},
		{name: "Precedence list", header: "Precedence: list\n", want: ClassList, wantReason: "Precedence: list"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := tt.in
			if tt.header != "" {
				in.Header = parseHeader(t, tt.header)
			}
			opts := testOptions
			if tt.opts != nil {
				opts = *tt.opts
			}
			got := Classify(in, opts)
			if got.Class != tt.want {
				t.Fatalf("Classify() = %+v, want class %q", got, tt.want)
			}
			if tt.wantReason != "" && got.Reason != tt.wantReason {
				t.Errorf("Classify() reason = %q, want %q", got.Reason, tt.wantReason)
			}
			if (got.Class == ClassNormal) != (got.Reason == "") {
				t.Errorf("Classify() = %+v: a reason must be given exactly when not normal", got)
			}
		})
	}
}

func TestClassifyNetMailHeader(t *testing.T) {
	// net/mail.Header has no Values method; its MIMEHeader conversion works.
	msg, err := mail.ReadMessage(strings.NewReader("Auto-Submitted: auto-replied\r\n\r\nbody"))
	if err != nil {
		t.Fatal(err)
	}
	got := Classify(Input{Header: nettextproto.MIMEHeader(msg.Header)}, Options{})
	if got.Class != ClassAutoReply {
		t.Errorf("Classify() = %+v, want auto-reply", got)
	}
}

func TestReasonIsSafeToLog(t *testing.T) {
	h := parseHeader(t, "List-Id: "+strings.Repeat("ä", 200)+"\n")
	got := Classify(Input{Header: h}, Options{})
	if got.Class != ClassList || len(got.Reason) > len("List-Id: ")+maxReasonValue+len("…") {
		t.Fatalf("Classify() = %+v (%d bytes), want a shortened list reason", got, len(got.Reason))
	}
	if !strings.HasSuffix(got.Reason, "ä…") {
		t.Errorf("reason %q was not cut on a character boundary", got.Reason)
	}
	got = Classify(Input{Header: nettextproto.MIMEHeader{"X-Autoreply": {"yes\r\nBcc: x\x00"}}}, Options{})
	if got.Reason != "X-Autoreply: yes Bcc: x" {
		t.Errorf("reason %q, want control characters removed", got.Reason)
	}
}

func FuzzClassify(f *testing.F) {
	f.Add(human, "", "", "", "")
	f.Add("Auto-Submitted: auto-replied\r\nReturn-Path: <>\r\n", "Automatic reply: x", "jane@example.com", "", "")
	f.Add("Content-Type: multipart/report; report-type=delivery-status\r\n", "", "mailer-daemon@x", "<>", "multipart/report")
	f.Add("Message-ID: <mg.1@mailgate.example.net>\r\n", "【自動返信】", "", "< >", "text/plain; charset=x")
	f.Add("From: =?x?q?\xff?=\r\n", "\xff\xfe", "@", "<", ";;")
	valid := map[Class]bool{ClassNormal: true, ClassAutoReply: true, ClassBounce: true, ClassList: true, ClassOwn: true}
	f.Fuzz(func(t *testing.T, rawHeader, subject, from, returnPath, contentType string) {
		in := Input{Subject: subject, From: from, ReturnPath: returnPath, ContentType: contentType}
		if h, err := textproto.ReadHeader(bufio.NewReader(strings.NewReader(rawHeader + "\r\n\r\n"))); err == nil {
			in.Header = &h
		}
		got := Classify(in, testOptions)
		if !valid[got.Class] {
			t.Fatalf("Classify() class %q is not one of the constants", got.Class)
		}
		if (got.Class == ClassNormal) != (got.Reason == "") {
			t.Fatalf("Classify() = %+v: reason given iff not normal", got)
		}
		if len(got.Reason) > 300 {
			t.Fatalf("reason of %d bytes", len(got.Reason))
		}
		for _, r := range got.Reason {
			if unicode.IsControl(r) {
				t.Fatalf("reason %q holds a control character", got.Reason)
			}
		}
	})
}

func BenchmarkClassify(b *testing.B) {
	normal := Input{Header: parseHeader(b, human), Subject: "Order 1234 has not arrived", From: "jane@example.com"}
	auto := Input{Header: parseHeader(b, human), Subject: "Réponse automatique : Commande 1234", From: "jane@example.com"}
	b.ReportAllocs()
	for b.Loop() {
		Classify(normal, testOptions)
		Classify(auto, testOptions)
	}
}
