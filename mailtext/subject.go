package mailtext

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// replyPrefixes are the reply and forward markers that mail clients put in
// front of a subject, lower-cased, without the colon. They cover English,
// German (AW, WG), the Nordic languages (SV, VS), Dutch (Antw, Doorst), French
// (TR, RÉF), Spanish/Portuguese (RV, ENC, Res), Italian (R, I), Polish (Odp,
// PD), Finnish (VL), Turkish (YNT, İLT) and Russian (Отв, Пересл).
var replyPrefixes = map[string]bool{
	"re": true, "fw": true, "fwd": true, "aw": true, "wg": true, "sv": true,
	"vs": true, "vb": true, "antw": true, "doorst": true, "tr": true, "réf": true,
	"ref": true, "rv": true, "enc": true, "res": true, "r": true, "i": true,
	"odp": true, "pd": true, "vl": true, "ynt": true, "ilt": true, "i̇lt": true,
	"отв": true, "пересл": true, "ha": true, "رد": true, "回复": true, "转发": true,
	"答复": true, "返信": true, "転送": true,
}

// NormalizeSubject strips every leading reply or forward marker ("Re:",
// "AW:", "Fwd:", "Re[2]:", "[EXT] Re:" is left alone) and collapses white
// space, so that "Re: AW: Re: Order 12" and "Order 12" compare equal.
func NormalizeSubject(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	for {
		colon := strings.IndexAny(s, ":：")
		if colon <= 0 || colon > 12 {
			return s
		}
		word := strings.ToLower(strings.TrimSpace(s[:colon]))
		// "Re[2]" and "Re(2)" count replies.
		if i := strings.IndexAny(word, "[("); i > 0 && len(word) > i+2 {
			if n := word[i+1 : len(word)-1]; strings.IndexFunc(n, notDigit) < 0 && strings.ContainsAny(word[len(word)-1:], "])") {
				word = word[:i]
			}
		}
		if !replyPrefixes[word] {
			return s
		}
		_, size := utf8.DecodeRuneInString(s[colon:])
		s = strings.TrimSpace(s[colon+size:])
	}
}

func notDigit(r rune) bool { return !unicode.IsDigit(r) }

// ReplySubject returns "Re: " and the normalized subject, or fallback when
// the subject is empty.
func ReplySubject(subject, fallback string) string {
	n := NormalizeSubject(subject)
	if n == "" {
		return fallback
	}
	return "Re: " + n
}
