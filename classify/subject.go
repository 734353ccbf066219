package classify

import (
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// autoReplyPhrases are lower-case, NFC subject openings that automatic
// replies use, by language. Longer phrases that extend shorter ones come
// first so the reason names the longest. Read-only.
var autoReplyPhrases = []string{
	// English
	"out of office autoreply", "out of office reply", "out of office",
	"out of the office", "automatic reply", "auto-reply", "autoreply",
	"auto reply", "away from the office", "away from office", "on vacation",
	// German
	"abwesenheitsnotiz", "automatische antwort", "außer haus", "ausser haus",
	// French
	"absence du bureau", "réponse automatique", "absent",
	// Spanish
	"respuesta automática", "fuera de la oficina",
	// Italian
	"risposta automatica", "fuori sede",
	// Dutch
	"automatisch antwoord", "afwezig",
	// Portuguese (and Spanish "ausente")
	"resposta automática", "ausente",
	// Polish
	"automatyczna odpowiedź",
	// Swedish; Danish and Norwegian
	"automatiskt svar", "frånvaro", "automatisk svar",
	// Finnish, Czech, Turkish
	"automaattinen vastaus", "automatická odpověď", "otomatik yanıt",
	// Russian
	"автоматический ответ", "вне офиса",
	// Japanese, Chinese
	"自動応答", "自動返信", "不在", "自动回复",
}

// closingBracket maps the opening brackets auto replies wrap their tag in,
// as in "[Auto-Reply] ..." or "【自動返信】...", to their closing one.
var closingBracket = map[rune]rune{'[': ']', '(': ')', '【': '】', '「': '」'}

// autoReplySubject reports whether subject opens with an out-of-office
// phrase, and which. The phrase must be the whole subject, be followed by a
// colon (":" or "：", spaces allowed before it), or be the whole content of
// a leading bracket. Reply prefixes are not skipped: "Re: Automatic reply"
// is a person answering an auto reply. Ordinary subjects such as "Absent
// item in my order" do not match.
func autoReplySubject(subject string) (string, bool) {
	s := normalizeSubject(subject)
	if s == "" {
		return "", false
	}
	var closer rune
	if r, size := utf8.DecodeRuneInString(s); closingBracket[r] != 0 {
		closer = closingBracket[r]
		s = strings.TrimLeft(s[size:], " ")
	}
	for _, p := range autoReplyPhrases {
		rest, ok := strings.CutPrefix(s, p)
		if !ok {
			continue
		}
		rest = strings.TrimLeft(rest, " ")
		switch {
		case closer != 0:
			if strings.HasPrefix(rest, string(closer)) {
				return p, true
			}
		case rest == "", strings.HasPrefix(rest, ":"), strings.HasPrefix(rest, "："):
			return p, true
		}
	}
	return "", false
}

// normalizeSubject composes (NFC), lower-cases and collapses white space.
func normalizeSubject(s string) string {
	s = strings.ToLower(norm.NFC.String(s))
	return strings.Join(strings.FieldsFunc(s, func(r rune) bool {
		return unicode.IsSpace(r) || unicode.IsControl(r)
	}), " ")
}
