package mailtext

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"
)

func FuzzTrim(f *testing.F) {
	for _, tc := range trimCases {
		f.Add(tc.in)
	}
	for _, tc := range ruleCases {
		f.Add(tc.in)
	}
	files, _ := filepath.Glob(filepath.Join("testdata", "replies", "*.txt"))
	for _, file := range files {
		if b, err := os.ReadFile(file); err == nil {
			f.Add(string(b))
		}
	}
	f.Add("-- \n")
	f.Add("On Tue, 3 Mar 2026 at 10:15, <\n> wrote:\n>")
	f.Add("From: a@b\nSent: x\n\n\nTo: y\nSubject: z")
	f.Fuzz(func(t *testing.T, in string) {
		got := Trim(in)
		norm := strings.TrimPrefix(normalizeNewlines(in), "\ufeff")
		if !isInvisibleLine(norm) && strings.TrimSpace(got.Text) == "" {
			t.Fatalf("Trim(%q) left nothing", in)
		}
		if strings.Contains(got.Text, "\r") {
			t.Fatalf("Trim(%q).Text contains CR: %q", in, got.Text)
		}
		if !got.Trimmed && (got.Quote != "" || got.Signature != "") {
			t.Fatalf("Trim(%q): untrimmed result with quote %q, signature %q", in, got.Quote, got.Signature)
		}
		inputLines := make(map[string]bool)
		for l := range strings.SplitSeq(norm, "\n") {
			l = strings.TrimSpace(l)
			inputLines[l] = true
			if strings.HasPrefix(l, ">") || strings.HasPrefix(l, "|") {
				inputLines[strings.TrimSpace(l[1:])] = true // forwarded content, unquoted
			}
		}
		for l := range strings.SplitSeq(got.Text, "\n") {
			// The notes for forwards and quote-only mail are Trim's own.
			if l != "" && !inputLines[strings.TrimSpace(l)] && !strings.HasPrefix(l, ForwardNotePrefix+" ") && l != QuoteOnlyNote {
				t.Fatalf("Trim(%q).Text has line %q that is not in the input", in, l)
			}
		}
	})
}

func FuzzDecodeFlowed(f *testing.F) {
	f.Add("Hello \nworld\n", false)
	f.Add("> a \n>> b \n-- \nsig \n", true)
	f.Add(" stuffed \r\n", true)
	f.Fuzz(func(t *testing.T, in string, delSp bool) {
		got := DecodeFlowed(in, delSp)
		norm := normalizeNewlines(in)
		if strings.Count(got, "\n") > strings.Count(norm, "\n") {
			t.Fatalf("DecodeFlowed(%q) = %q has more lines than its input", in, got)
		}
		plain := true
		for l := range strings.SplitSeq(norm, "\n") {
			if strings.HasSuffix(l, " ") || strings.HasPrefix(l, " ") || strings.HasPrefix(l, ">") {
				plain = false
				break
			}
		}
		if plain && got != norm {
			t.Fatalf("DecodeFlowed(%q) = %q, want the input unchanged", in, got)
		}
		if utf8.ValidString(in) && !utf8.ValidString(got) {
			t.Fatalf("DecodeFlowed(%q) = %q is not valid UTF-8", in, got)
		}
	})
}

func FuzzHTMLToText(f *testing.F) {
	f.Add("<p>Hello <b>Jane</b>,</p><table><tr><td>a</td></tr></table>")
	f.Add(`<div class="gmail_quote">x</div><blockquote type="cite">y</blockquote>`)
	f.Add(`<div>a</div><hr><div id="divRplyFwdMsg"><b>From:</b> x</div><div>b</div>`)
	f.Add("<pre>  code\n  more</pre><blockquote><blockquote>deep</blockquote></blockquote>")
	f.Fuzz(func(t *testing.T, in string) {
		for _, trimmed := range []bool{false, true} {
			var got string
			var err error
			if trimmed {
				got, _, err = HTMLToTextTrimmed(in)
			} else {
				got, err = HTMLToText(in)
			}
			if err != nil {
				t.Fatalf("convert %q: %v", in, err)
			}
			if strings.Contains(got, "\n\n\n") || strings.Contains(got, " \n") || strings.Contains(got, "\r") {
				t.Fatalf("convert %q = %q is not cleaned", in, got)
			}
		}
	})
}

// mobileSignatureSamples are one-line signatures of mail apps, one or more
// per alternative of mobileSignatureRe, in odd cases.
var mobileSignatureSamples = []string{
	"Sent from my iPhone", "SENT WITH PROTON MAIL SECURE EMAIL.", "ſent from my iPad",
	"Diese Nachricht wurde von meinem Android-Mobiltelefon mit GMX Mail gesendet",
	"Get Outlook for iOS", "Download the Outlook app for Android", "Von meinem iPhone gesendet",
	"Vom meinem Samsung Galaxy gesendet", "Gesendet von Mail für Windows", "Outlook für Android herunterladen",
	"Envoyé de mon iPhone", "ENVOYÉ DEPUIS MON APPAREIL MOBILE", "Obtenir Outlook pour iOS",
	"Télécharger Outlook pour Android", "Enviado desde mi iPhone", "Enviada do meu celular",
	"Obtener Outlook para iOS", "Descargar Outlook para Android", "Baixe o Outlook para Android",
	"Baixar o Outlook para iOS", "Obtenha o Outlook para Android", "Inviato da iPhone",
	"Scarica Outlook per Android", "Verzonden vanaf mijn iPhone", "Verstuurd vanaf mijn telefoon",
	"Outlook voor Android downloaden", "Wysłane z iPhone'a", "Wyslane z mojego telefonu",
	"Pobierz aplikację Outlook dla Androida", "Skickat från min iPhone", "Skickat med Outlook för iOS",
	"Skaffa Outlook för Android", "Sendt fra min iPhone", "Hent Outlook til Android",
	"Отправлено с iPhone", "ОТПРАВЛЕНО С МОЕГО ТЕЛЕФОНА", "Получите Outlook для Android",
	"Загрузите Outlook для iOS", "Скачайте Outlook для Android", "Lähetetty iPhonesta",
	"Odesláno z mobilního telefonu", "Odeslano z mobilu", "iPhone'umdan gönderildi", "iPhone'umdan GÖNDERILDI.",
}

func TestMobileSignatureSamples(t *testing.T) {
	for _, s := range mobileSignatureSamples {
		if !isMobileSignature(s) {
			t.Errorf("isMobileSignature(%q) = false", s)
		}
	}
	for _, s := range []string{"Sent via DHL on Monday", "Thanks for the quick answer", "Gesendet wird morgen"} {
		if isMobileSignature(s) {
			t.Errorf("isMobileSignature(%q) = true", s)
		}
	}
}

// The cheap prefilter never rejects a line that the expression matches.
func FuzzMobileSignaturePrefilter(f *testing.F) {
	for _, s := range mobileSignatureSamples {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if mobileSignatureRe.MatchString(s) && !mayBeMobileSignature(s) {
			t.Fatalf("mayBeMobileSignature(%q) = false, but mobileSignatureRe matches", s)
		}
	})
}

// mayBeMobileSignatureReference is the prefilter as it was before it took
// lines whose spaces are not normalised yet.
func mayBeMobileSignatureReference(s string) bool {
	for _, w := range mobileSignatureStarts {
		if hasPrefixFold(s, w) {
			return true
		}
	}
	s = strings.TrimSuffix(s, ".")
	return hasSuffixFold(s, "gönderildi") || strings.HasSuffix(s, "から送信")
}

// On a trimmed line, the prefilter decides as the reference does on the
// line with its spaces normalised, which is where isMobileSignature took
// it before.
func FuzzMobileSignatureRawLine(f *testing.F) {
	for _, s := range mobileSignatureSamples {
		f.Add(s)
		f.Add(strings.ReplaceAll(s, " ", " \u00a0\t"))
	}
	f.Add("\xffsent from my iPhone")
	f.Add("sent\xff from my iPhone")
	f.Add("the order is late")
	f.Fuzz(func(t *testing.T, s string) {
		s = strings.TrimSpace(s)
		if got, want := mayBeMobileSignature(s), mayBeMobileSignatureReference(normalizeSpaces(s)); got != want {
			t.Fatalf("mayBeMobileSignature(%q) = %v, the reference on the normalised line says %v", s, got, want)
		}
	})
}

// replyAboveReference is the prefilter mayBeReplyAbove replaced: lower-case
// the ASCII letters, then look for each word.
func replyAboveReference(s string) bool {
	b := []byte(s)
	for i, c := range b {
		b[i] = lowerASCII(c)
	}
	for _, w := range replyAboveWords {
		if strings.Contains(string(b), w) {
			return true
		}
	}
	return false
}

// mayBeReplyAbove finds a word exactly where the reference does.
func FuzzReplyAbovePrefilter(f *testing.F) {
	for _, s := range []string{
		"##- Please type your reply above this line -##", "ABOVE", "Bitte oberhalb antworten", "Über dieser Zeile",
		"über DIESER", "AU-DESSUS", "por encima", "BOVEN deze regel", "sopra", "acima", "abov", "a", "",
		"Überdieser", "ÜBER DIESER",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := mayBeReplyAbove(s), replyAboveReference(s); got != want {
			t.Fatalf("mayBeReplyAbove(%q) = %v, the reference says %v", s, got, want)
		}
	})
}
