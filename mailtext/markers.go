package mailtext

import (
	"regexp"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"
)

// This file holds the recognisers for the marks that mail clients put between
// a reply and the history it quotes. The package-level regular expressions
// are compiled once and never changed: they are constants in spirit.

// attributionVerbs are the verbs of "<someone> wrote:" in the languages that
// mail clients localise their attribution lines to.
const attributionVerbs = `wrote|writes|has written|schrieb|geschrieben|a [ée]crit|[ée]crit|escribi[óo]|escribe|ha escrito|` +
	`ha scritto|scrisse|schreef|geschreven|escreveu|napisa[łl]\(a\)|napisa[łl]a|napisa[łl]|pisze|skrev|skriver|` +
	`пишет|написал\(а\)|написала|написал|написав\(ла\)|написав|пише|kirjoitti|napsal\(a\)|napsala|napsal|` +
	`nap[íi]sal\(a\)|nap[íi]sal|yazd[ıi]|[íi]rta|a scris|έγραψε|va escriure|napisao|작성|viết|menulis|kirjutas|` +
	`rašė|rakstīja|skrifaði|כתב|כתבה|نوشت|लिखा`

var (
	// attributionRe matches a (joined, space-normalised) attribution line
	// that ends with a colon: "On <date>, <name> wrote:", "Am <date> schrieb
	// <name>:", "<name> skrev:", "Le <date>, <name> a écrit :".
	attributionRe = regexp.MustCompile(`(?i)(?:(?:^|[^\p{L}])(?:` + attributionVerbs + `)(?:[^\p{L}].{0,160})?|写道|寫道|書きました)\s?[:：]$`)

	// attributionVerbRe finds an attribution verb anywhere in a line.
	attributionVerbRe = regexp.MustCompile(`(?i)(?:^|[^\p{L}])(?:` + attributionVerbs + `)(?:[^\p{L}]|$)|写道|寫道`)

	// quotingRe matches Horde-style "Quoting <name>:" attributions.
	quotingRe = regexp.MustCompile(`(?i)^(?:quoting|zitat von|citando|citation de|citazione di|cytuj[ęe]|цитата) .{1,200}[:：]$`)

	// attributionStartRe matches how the first line of an attribution starts:
	// a localised "On"/"Am"/"Le"..., a date, or a short weekday abbreviation
	// followed by a day number ("wt., 3", "вт, 3", "tis 3").
	attributionStartRe = regexp.MustCompile(`(?i)^(?:(?:on|am|le|el|il|op|em|den|dne|dnia|w dniu|in data|no dia|el día|quoting|zitat von|citando) |\d|\p{L}{1,4}\.?,? {1,2}\d)`)

	// dateTimeRe matches a clock time, a year or a numeric date.
	dateTimeRe = regexp.MustCompile(`\d{1,2}[:.h]\d{2}|(?:^|\D)(?:19|20)\d{2}(?:\D|$)|\d{1,4}[./-]\d{1,2}[./-]\d{1,4}`)

	// bracketedAddrRe matches an address in brackets: "<jane@example.com>",
	// "(jane@example.com)".
	bracketedAddrRe = regexp.MustCompile(`[<(\[][^\s<>()\[\]]+@[^\s<>()\[\]]+[>)\]]`)

	// clockRe matches a clock time: "10:15", "10.15" (Danish), "10h15".
	clockRe = regexp.MustCompile(`(?:^|[^\d.])\d{1,2}[:.h]\d{2}(?:[^\d.]|\.\D|\.?$)`)

	// pronounBeforeVerbRe matches prose like "as you wrote:" or "I wrote:".
	pronounBeforeVerbRe = regexp.MustCompile(`(?i)(?:^|\s)(?:i|you|we|he|she|they|ich|du|wir|je|tu|nous|vous|yo|io)\s+$`)

	// oneLineHeaderRe matches an Outlook header block squashed onto one line:
	// "From: x Sent: y To: z Subject: w".
	oneLineHeaderRe = regexp.MustCompile(`(?i)^\**\s*(?:from|von|de|da|van|od|från|от|fra)\s?[:：]\**.{1,300}?\s\**(?:sent|date|gesendet|datum|envoyé|enviado|enviado el|enviada em|inviato|data|verzonden|wysłane|wysłano|skickat|отправлено|sendt|lähetetty)\s?[:：].{1,300}?\s\**(?:subject|betreff|objet|asunto|oggetto|onderwerp|temat|ämne|тема|emne|assunto|aihe)\s?[:：]`)

	// replyAboveRe matches the "reply above this line" markers of help desks.
	replyAboveRe = regexp.MustCompile(`(?i)(?:reply|respond|write|type|answer)\b.{0,30}\babove this line|oberhalb dieser (?:zeile|linie)|über dieser (?:zeile|linie)|au-dessus de cette ligne|encima de esta l[íi]nea|boven deze (?:lijn|regel)|sopra questa (?:linea|riga)|acima desta linha`)

	// mobileSignatureRe matches the one-line signatures of mobile and desktop
	// mail apps ("Sent from my iPhone", "Von meinem iPhone gesendet", "Get
	// Outlook for iOS") in the languages they ship in.
	mobileSignatureRe = regexp.MustCompile(`(?i)^(?:` +
		`sent (?:from|with|via|using) \S[^,;!?]{0,50}` +
		`|sent (?:from|with|via) (?:my |the )?(?:iphone|ipad|android|mobile|phone|smartphone|tablet|blackberry|verizon|samsung|galaxy|proton ?mail)\b[^;!?]{0,60}` +
		`|diese nachricht wurde (?:von|mit) \S[^,;!?]{0,70} (?:gesendet|versendet)` +
		`|(?:get|download) (?:the )?outlook (?:for|app for) \S[^,;!?]{0,30}` +
		`|(?:von|vom) mein(?:em|er)? \S[^,;!?]{0,50} gesendet` +
		`|gesendet (?:von|mit|vom|über|aus) \S[^,;!?]{0,50}` +
		`|outlook für \S[^,;!?]{0,20} herunterladen` +
		`|envoy[ée]e? (?:de|depuis|à partir de|a partir de|avec|via|par) \S[^,;!?]{0,50}` +
		`|(?:obtenir|télécharger) outlook pour \S[^,;!?]{0,20}` +
		`|enviad[oa] (?:desde|con|a través de|mediante|do|da|de|pelo|pela|via|com|usando) \S[^,;!?]{0,50}` +
		`|(?:obtener|descargar|baixe o|baixar o|obtenha o) outlook para \S[^,;!?]{0,20}` +
		`|inviato (?:da|dal|dalla|dallo|con|tramite|usando) \S[^,;!?]{0,50}` +
		`|scarica outlook per \S[^,;!?]{0,20}` +
		`|(?:verzonden|verstuurd) (?:vanaf|van|met|via|vanuit) \S[^,;!?]{0,50}` +
		`|outlook voor \S[^,;!?]{0,20} (?:downloaden|ophalen)` +
		`|wys[łl]ane (?:z|ze|za pomocą|przez) \S[^,;!?]{0,50}` +
		`|pobierz (?:aplikację )?outlook dla \S[^,;!?]{0,30}` +
		`|skickat(?:es)? (?:från|fran|med|via) \S[^,;!?]{0,50}` +
		`|skaffa outlook för \S[^,;!?]{0,20}` +
		`|sendt (?:fra|med|via) \S[^,;!?]{0,50}` +
		`|hent outlook (?:for|til) \S[^,;!?]{0,20}` +
		`|отправлено (?:с|со|из|через) \S[^,;!?]{0,50}` +
		`|(?:получите|загрузите|скачайте) outlook для \S[^,;!?]{0,20}` +
		`|lähetetty \S[^,;!?:]{0,50}` +
		`|odesl[áa]no (?:z|ze|pomocí) \S[^,;!?]{0,50}` +
		`|\S[^,;!?]{0,40} gönderildi` +
		`|\S[^,;!?]{0,30}から送信` +
		`|(?:发自|寄自)\S[^,;!?]{0,30}` +
		`)\.?$`)

	// appWordRe matches the device or app that a mail-app signature names;
	// without one, "Sent via DHL on Monday" is no signature.
	appWordRe = regexp.MustCompile(`(?i)iphone|ipad|android|mobil|m[óo]vil|phone|mail|outlook|windows|handy|t[ée]l[ée]phone|tel[ée]fono|` +
		`telefo|celular|cellulare|телефон|планшет|tablet|app|почт|yahoo|aol|gmx|web\.de|proton|blackberry|huawei|xiaomi|` +
		`galaxy|samsung|pixel|nokia|motorola|oneplus|oppo|device|ger[äa]t|appareil|dispositivo|apparaat|urządzeni|` +
		`устройств|ios|courrier|correo|posta|poczt|e-post|thunderbird|spark|tuta|zoho|icloud|smartphone`)

	// inlineLinkRe matches the link targets that text renderings of HTML put
	// after a link text: "Mail<https://...>" or "Mail ( https://... )".
	inlineLinkRe = regexp.MustCompile(`\s*(?:<(?:https?|mailto):[^>\s]*>|\(\s*https?://[^)\s]*\s*\))`)
)

// line is one line of the text being trimmed.
type line struct {
	raw    string // the line without its line ending
	trim   string // raw without surrounding white space
	quoted bool   // the line carries a quote marker ('>' or '|')
	empty  bool   // the line shows nothing
}

func (l line) blank() bool { return l.empty }

// splitLines splits normalised text into lines.
// It is strings.Split(text, "\n") with each part classified, without the
// slice of strings in between.
func splitLines(text string) []line {
	lines := make([]line, 0, strings.Count(text, "\n")+1)
	for {
		r, rest, found := strings.Cut(text, "\n")
		lines = append(lines, newLine(r))
		if !found {
			return lines
		}
		text = rest
	}
}

// newLine classifies the raw line r.
func newLine(r string) line {
	t := strings.TrimSpace(r)
	empty := t == "" || (t[0] >= utf8.RuneSelf && isInvisibleLine(t))
	return line{raw: r, trim: t, quoted: !empty && isQuoteMarked(t), empty: empty}
}

// normalizeSpaces replaces the no-break and other special spaces that mail
// clients put in attribution lines (before a French colon, before AM/PM) with
// plain spaces and collapses runs of spaces.
func normalizeSpaces(s string) string {
	if !changesSpaces(s) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	space := false
	for _, r := range s {
		if unicode.IsSpace(r) {
			space = true
			continue
		}
		if space {
			b.WriteByte(' ')
			space = false
		}
		b.WriteRune(r)
	}
	return b.String()
}

// changesSpaces reports whether normalizeSpaces changes s: s has a tab,
// a special space or two spaces in a row.
func changesSpaces(s string) bool {
	for _, r := range s {
		if r == '\t' || (r > 0x7f && unicode.IsSpace(r)) {
			return true
		}
	}
	return strings.Contains(s, "  ")
}

// endsWithColon reports whether s ends with an ASCII or full-width colon.
func endsWithColon(s string) bool {
	return strings.HasSuffix(s, ":") || strings.HasSuffix(s, "：")
}

// matchAttribution reports whether the space-normalised candidate is an
// attribution line. A strong attribution carries a clock time or address, so
// it marks the start of quoted history even when no '>' block follows.
func matchAttribution(c string) (ok, strong bool) {
	if len(c) > 400 || !endsWithColon(c) {
		return false, false
	}
	hasAddr := strings.Contains(c, "@")
	if quotingRe.MatchString(c) {
		return true, hasAddr
	}
	if loc := attributionRe.FindStringIndex(c); loc != nil {
		prefix := c[:loc[0]]
		if len(prefix) > 250 || strings.Contains(prefix, "? ") || strings.Contains(prefix, "! ") {
			return false, false
		}
		// People quote in prose ("On 3 March 2026 your colleague wrote:");
		// clients write a clock time or an address.
		strong = hasAddr || clockRe.MatchString(c)
		if strong && !hasAddr && pronounBeforeVerbRe.MatchString(prefix+" ") {
			strong = false
		}
		return true, strong
	}
	// Verbless attributions (Gmail in Russian or Japanese, Yandex, mail.ru,
	// old Gmail) and those of languages without a known verb: "<date> <name>
	// <address>:".
	if hasAddr && len(c) <= 250 {
		if strings.HasSuffix(c, ">:") || strings.HasSuffix(c, ">：") || strings.HasSuffix(c, "> :") {
			return dateTimeRe.MatchString(c), true
		}
		if bracketedAddrRe.MatchString(c) && clockRe.MatchString(c) {
			return true, true
		}
	}
	return false, false
}

// attributionAt reports whether an attribution line starts at lines[i]; n is
// the number of lines it spans (mail clients wrap long attributions over two
// or three lines, anywhere) and strong tells whether it carries a clock time
// or an address.
func attributionAt(lines []line, i int) (n int, strong bool) {
	first := lines[i].trim
	if len(first) > 8 && strings.HasPrefix(first, "--") && strings.HasSuffix(first, "--") {
		// Zoho: "---- On <date> <name> wrote ----".
		if ok, s := matchAttribution(normalizeSpaces(strings.Trim(first, "- ")) + ":"); ok {
			return 1, s
		}
		return 0, false
	}
	if endsWithColon(first) {
		if ok, s := matchAttribution(normalizeSpaces(first)); ok {
			return 1, s
		}
		return 0, false
	}
	// Only try joining when a following line ends with a colon.
	end := 0
	for k := 1; k <= 2 && i+k < len(lines); k++ {
		l := lines[i+k]
		if l.blank() || l.quoted {
			break
		}
		if endsWithColon(l.trim) {
			end = i + k
			break
		}
	}
	if end == 0 || len(first) > 300 {
		return 0, false
	}
	nf := normalizeSpaces(first)
	if !attributionStartRe.MatchString(nf) && !attributionVerbRe.MatchString(nf) {
		return 0, false
	}
	// Prefer a complete attribution on the next line: "On my way.\nOn Tue,
	// ... wrote:" is a line of text and an attribution, not one wrapped line;
	// "jane@example.com> wrote:" is no complete attribution.
	next := normalizeSpaces(lines[i+1].trim)
	if attributionStartRe.MatchString(next) || bracketedAddrRe.MatchString(next) {
		if ok, _ := matchAttribution(next); ok {
			return 0, false
		}
	}
	var b strings.Builder
	for k := i; k <= end; k++ {
		if k > i {
			b.WriteByte(' ')
		}
		b.WriteString(lines[k].trim)
	}
	if ok, s := matchAttribution(normalizeSpaces(b.String())); ok {
		return end - i + 1, s
	}
	return 0, false
}

// looseAttribution reports whether s, a line that precedes a '>' block, looks
// like an attribution of an unknown format: it ends with a colon and carries
// an address or a date.
func looseAttribution(s string) bool {
	if len(s) > 250 {
		return false
	}
	switch {
	case endsWithColon(s):
		return strings.Contains(s, "@") || dateTimeRe.MatchString(s)
	case strings.HasSuffix(s, ">"): // old Gmail: "2026/3/3 Jane <jane@example.com>"
		return strings.Contains(s, "@") && dateTimeRe.MatchString(s)
	}
	return false
}

// headerKind classifies the header field names of the blocks that Outlook
// and other clients write above quoted or forwarded messages.
type headerKind uint8

const (
	headerNone headerKind = iota
	headerFrom
	headerSent
	headerTo
	headerCc
	headerSubject
)

// headerKeyOf returns the kind of the header field that line s starts with,
// accepting Outlook's "*From:*" bold markers and French spacing ("De :").
func headerKeyOf(s string) (headerKind, string) {
	if len(s) < 2 {
		return headerNone, ""
	}
	s = strings.TrimLeft(s, "* ")
	limit := min(len(s), 40)
	idx := strings.IndexByte(s[:limit], ':')
	if w := strings.Index(s[:limit], "："); w >= 0 && (idx < 0 || w < idx) {
		idx = w
	}
	if idx <= 0 {
		return headerNone, ""
	}
	key := strings.TrimRightFunc(s[:idx], func(r rune) bool { return r == '*' || unicode.IsSpace(r) })
	if key == "" || !utf8.ValidString(key) {
		return headerNone, ""
	}
	value := strings.TrimLeft(s[idx:], ":：* ")
	return headerKindOf(strings.ToLower(normalizeSpaces(key))), value
}

// headerKindOf maps a lower-case header field name to its kind.
func headerKindOf(key string) headerKind {
	switch key {
	case "from", "von", "de", "da", "van", "od", "från", "fran", "от", "fra", "lähettäjä", "feladó", "kimden",
		"odesílatel", "发件人", "發件人", "寄件者", "差出人", "보낸 사람", "expéditeur", "mittente", "remetente",
		"afzender", "avsändare", "absender", "nadawca", "afsender", "avsender", "от кого", "από", "de la", "šalje",
		"від":
		return headerFrom
	case "sent", "date", "gesendet", "datum", "envoyé", "envoyé le", "enviado", "enviado el", "enviada em",
		"enviado em", "enviada", "fecha", "inviato", "data", "verzonden", "verstuurd", "wysłane", "wysłano",
		"skickat", "отправлено", "дата", "sendt", "lähetetty", "päivämäärä", "elküldve", "dátum", "odesláno",
		"gönderildi", "tarih", "发送时间", "發送時間", "日期", "送信日時", "보낸 날짜", "sent at", "στάλθηκε", "trimis",
		"poslano", "надіслано", "寄件日期", "odoslané":
		return headerSent
	case "to", "an", "à", "a", "pour", "para", "aan", "do", "till", "кому", "til", "vastaanottaja", "címzett", "komu",
		"kime", "收件人", "宛先", "받는 사람", "destinatario", "destinataire", "empfänger", "destinatário", "προς",
		"către", "prima", "收件者":
		return headerTo
	case "cc", "bcc", "kopie", "copie", "cópia", "copia", "kopia", "копия", "kopio", "másolat", "bilgi", "抄送", "cco":
		return headerCc
	case "subject", "betreff", "objet", "asunto", "oggetto", "onderwerp", "temat", "ämne", "тема", "emne", "aihe",
		"tárgy", "předmět", "konu", "主题", "主旨", "件名", "제목", "assunto", "sujet", "θέμα", "subiect", "predmet":
		return headerSubject
	}
	return headerNone
}

// headerBlockAt reports whether a block of mail header fields (the quoted
// message's From, Sent, To, Subject) starts at lines[i]. afterRule relaxes
// the test for blocks that follow a separator line.
func headerBlockAt(lines []line, i int, afterRule bool) bool {
	kind, value := headerKeyOf(lines[i].trim)
	if kind == headerNone {
		return false
	}
	if kind == headerFrom && oneLineHeaderRe.MatchString(lines[i].trim) {
		return true
	}
	var seen [headerSubject + 1]bool
	seen[kind] = true
	fromAddr := kind == headerFrom && looksLikeSender(value)
	firstAfterFrom := headerNone
	blanks, others := 0, 0
	for j := i + 1; j < len(lines) && j < i+16; j++ {
		l := lines[j]
		if l.blank() {
			blanks++
			if blanks > 2 {
				break
			}
			continue
		}
		blanks = 0
		if l.quoted {
			break
		}
		k, v := headerKeyOf(l.trim)
		if k == headerNone {
			others++
			if others > 4 {
				break
			}
			continue
		}
		if firstAfterFrom == headerNone {
			firstAfterFrom = k
		}
		if k == headerFrom && !seen[headerFrom] {
			fromAddr = looksLikeSender(v)
		}
		seen[k] = true
	}
	if !seen[headerFrom] {
		return false
	}
	n := 0
	for _, s := range seen[headerFrom:] {
		if s {
			n++
		}
	}
	switch {
	case seen[headerSubject] && seen[headerSent] && seen[headerTo]:
		return true
	case seen[headerSubject] && (seen[headerSent] || seen[headerTo]) && fromAddr:
		return true
	case afterRule && n >= 2:
		return true
	case kind == headerFrom && firstAfterFrom == headerSent && fromAddr:
		return true
	}
	return false
}

// looksLikeSender reports whether a From field value carries an address:
// "Jane <jane@example.com>", "jane@example.com", "Jane [mailto:...]".
func looksLikeSender(v string) bool {
	return strings.ContainsAny(v, "@<[")
}

// isRule reports whether s is a separator line such as "_____" or "-----".
func isRule(s string) bool {
	if len(s) < 5 {
		return false
	}
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '-', '_', '=', '*', '~', ' ':
		default:
			return false
		}
	}
	return true
}

// separatorPhrases are the texts between the dashes of "-----Original
// Message-----" and "---------- Forwarded message ---------" lines.
var separatorPhrases = [...]string{
	"original message", "forwarded message", "ursprüngliche nachricht", "originalnachricht",
	"original-nachricht", "weitergeleitete nachricht", "message d'origine", "message original",
	"message transféré", "message réexpédié", "mensaje original", "mensaje reenviado", "messaggio originale",
	"messaggio inoltrato", "oorspronkelijk bericht", "origineel bericht", "doorgestuurd bericht",
	"mensagem original", "mensagem encaminhada", "wiadomość oryginalna", "oryginalna wiadomość",
	"wiadomość przekazana", "ursprungligt meddelande", "vidarebefordrat meddelande", "исходное сообщение",
	"пересылаемое сообщение", "пересланное сообщение", "oprindelig meddelelse", "original meddelelse",
	"videresendt meddelelse", "opprinnelig melding", "videresendt melding", "alkuperäinen viesti",
	"välitetty viesti", "původní zpráva", "přeposlaná zpráva", "eredeti üzenet", "továbbított üzenet",
	"orijinal ileti", "iletilen ileti", "原始邮件", "转发的邮件", "元のメッセージ", "転送されたメッセージ",
	"original email", "forwarded email", "forwarded mail", "reply message",
}

// forwardIntros are Apple Mail's "Begin forwarded message:" lines, lower case
// and without the colon.
var forwardIntros = [...]string{
	"begin forwarded message", "anfang der weitergeleiteten nachricht", "début du message réexpédié",
	"début du message transféré", "inicio del mensaje reenviado", "comienzo del mensaje reenviado",
	"inizio messaggio inoltrato", "begin doorgestuurd bericht", "início da mensagem reencaminhada",
	"início da mensagem encaminhada", "początek przekazywanej wiadomości", "vidarebefordrat brev",
	"начало переадресованного сообщения", "videresendt besked", "videresendt melding", "välitetty viesti alkaa",
}

// isSeparator reports whether s is an "-----Original Message-----",
// forwarded-message or "Begin forwarded message:" line.
func isSeparator(s string) bool {
	if len(s) > 120 || len(s) < 10 {
		return false
	}
	switch {
	case strings.HasPrefix(s, "--"), strings.HasPrefix(s, "__"), strings.HasPrefix(s, "=="),
		strings.HasPrefix(s, "**"), strings.HasPrefix(s, "- -"):
		p := strings.Trim(s, "-_=*~ \t:")
		p = strings.ToLower(strings.ReplaceAll(normalizeSpaces(p), "’", "'"))
		for _, sp := range separatorPhrases {
			if strings.Contains(p, sp) && len(p) <= len(sp)+12 {
				return true
			}
		}
		return false
	}
	p, ok := introPhrase(s)
	return ok && (slices.Contains(forwardIntros[:], p) || p == "original message" || p == "forwarded message")
}

// introPhrase returns s lower-cased without its closing colon, when s
// ends with a colon or with "message" as a line that introduces a quoted
// or forwarded message does.
func introPhrase(s string) (string, bool) {
	if !endsWithColon(s) && !strings.EqualFold(s[len(s)-7:], "message") {
		return "", false
	}
	return strings.ToLower(normalizeSpaces(strings.TrimRight(s, ":： \u00a0"))), true
}

// isReplyAbove reports whether s is a help desk's "reply above this line"
// marker.
func isReplyAbove(s string) bool {
	if len(s) > 160 || len(s) < 15 {
		return false
	}
	// Cheap filter before the regular expression: the marker says "above".
	if !mayBeReplyAbove(s) {
		return false
	}
	return replyAboveRe.MatchString(s)
}

// replyAboveWords are the words that every "reply above this line" marker
// contains, in lower case; mayBeReplyAbove looks for them.
var replyAboveWords = [...]string{"above", "oberhalb", "über dieser", "au-dessus", "encima", "boven", "sopra", "acima"}

// mayBeReplyAbove reports whether s, with its ASCII letters lower-cased,
// contains one of replyAboveWords. It looks at each pair of bytes once and
// compares a word only where the pair starts one.
func mayBeReplyAbove(s string) bool {
	for i := 0; i+1 < len(s); i++ {
		if !replyAboveFirstBytes[s[i]] {
			continue
		}
		switch uint16(lowerASCII(s[i]))<<8 | uint16(lowerASCII(s[i+1])) {
		case 'a'<<8 | 'b', 'o'<<8 | 'b', 0xc3<<8 | 0xbc, 'a'<<8 | 'u', 'e'<<8 | 'n', 'b'<<8 | 'o', 's'<<8 | 'o', 'a'<<8 | 'c':
			for _, w := range replyAboveWords {
				if hasPrefixLowerASCII(s[i:], w) {
					return true
				}
			}
		}
	}
	return false
}

// replyAboveFirstBytes are the bytes that start one of replyAboveWords
// once lower-cased.
var replyAboveFirstBytes = func() (first [256]bool) {
	for c := range 256 {
		for _, w := range replyAboveWords {
			if lowerASCII(byte(c)) == w[0] {
				first[c] = true
			}
		}
	}
	return first
}()

// lowerASCII lower-cases an ASCII letter and keeps any other byte.
func lowerASCII(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// hasPrefixLowerASCII reports whether s with its ASCII letters lower-cased
// starts with prefix.
func hasPrefixLowerASCII(s, prefix string) bool {
	if len(s) < len(prefix) {
		return false
	}
	for i := 0; i < len(prefix); i++ {
		if lowerASCII(s[i]) != prefix[i] {
			return false
		}
	}
	return true
}

// isMobileSignature reports whether s is the one-line signature of a mail
// app, such as "Sent from my iPhone".
func isMobileSignature(s string) bool {
	if len(s) > 160 || len(s) < 8 {
		return false
	}
	// inlineLinkRe matches only from a '<' or a '('.
	if strings.ContainsAny(s, "<(") && strings.Contains(s, "http") {
		s = inlineLinkRe.ReplaceAllString(s, "")
	}
	s = strings.TrimSpace(strings.Trim(s, "*_"))
	// The prefilter takes the line before normalizeSpaces copies it: it
	// matches a run of white space where a start has a space.
	if !mayBeMobileSignature(s) {
		return false
	}
	s = normalizeSpaces(s)
	if utf8.RuneCountInString(s) > 90 || strings.Count(s, " ") > 12 {
		return false
	}
	return mobileSignatureRe.MatchString(s) && appWordRe.MatchString(s)
}

// mobileSignatureStarts are the words that every alternative of
// mobileSignatureRe but the Turkish one starts with, as far as they are
// literal. Keep them in step with the expression; a test checks that
// mayBeMobileSignature never rejects what the expression matches.
var mobileSignatureStarts = []string{
	"sent ", "diese nachricht ", "get ", "download ", "von mein", "vom mein", "gesendet ",
	"outlook ", "envoy", "obtenir ", "télécharger ", "enviad", "obtener ", "descargar ",
	"baixe o ", "baixar o ", "obtenha o ", "inviato ", "scarica ", "verzonden ", "verstuurd ",
	"wysłane ", "wyslane ", "pobierz ", "skickat", "skaffa ", "sendt ", "hent ", "отправлено ",
	"получите ", "загрузите ", "скачайте ", "lähetetty ", "odeslá", "odesla", "发自", "寄自",
}

// mayBeMobileSignature is a cheap necessary condition for
// mobileSignatureRe, which is slow to fail on the ordinary lines of a body:
// s starts with one of mobileSignatureStarts or ends with "gönderildi" or
// "から送信",
// compared with the same case folding as the expression's (?i). On a line
// without white space at its ends, the result is the same before and after
// normalizeSpaces: where normalizeSpaces would change the line, a space in
// a start matches a run of white space.
func mayBeMobileSignature(s string) bool {
	if !mayBeMobileSignatureEnds(s) {
		return false
	}
	starts := mobileSignatureStarts
	if s != "" && s[0] < utf8.RuneSelf {
		starts = mobileSignatureStartsByByte[s[0]]
	}
	for _, w := range starts {
		if hasPrefixFold(s, w) {
			return true
		}
	}
	for _, w := range starts {
		if hasPrefixFoldSpaced(s, w) && changesSpaces(s) {
			return true
		}
	}
	s = strings.TrimSuffix(s, ".")
	return hasSuffixFold(s, "gönderildi") || strings.HasSuffix(s, "から送信")
}

// mobileSignatureStartsByByte lists, for each ASCII byte, the
// mobileSignatureStarts whose first rune folds to it: the only ones that a
// line starting with that byte can start with.
var mobileSignatureStartsByByte = func() (by [utf8.RuneSelf][]string) {
	for c := range rune(utf8.RuneSelf) {
		for _, w := range mobileSignatureStarts {
			if first, _ := utf8.DecodeRuneInString(w); foldEqual(c, first) {
				by[c] = append(by[c], w)
			}
		}
	}
	return by
}()

// mayBeMobileSignatureEnds is mayBeMobileSignature's first test, on the
// ends of s alone: an ASCII first byte must start one of
// mobileSignatureStarts as far as case folding goes, else the last rune
// (before a final ".") must be able to end "gönderildi" or "から送信".
// Other first and last runes pass.
func mayBeMobileSignatureEnds(s string) bool {
	if s == "" {
		return false
	}
	if s[0] >= utf8.RuneSelf || len(mobileSignatureStartsByByte[s[0]]) > 0 {
		return true
	}
	s = strings.TrimSuffix(s, ".")
	if s == "" {
		return false
	}
	last := s[len(s)-1]
	return last >= utf8.RuneSelf || foldEqual(rune(last), 'i')
}

// hasPrefixFold reports whether s starts with prefix under simple Unicode
// case folding, as regexp's (?i) compares.
func hasPrefixFold(s, prefix string) bool {
	for _, p := range prefix {
		r, size := utf8.DecodeRuneInString(s)
		if size == 0 || !foldEqual(r, p) {
			return false
		}
		s = s[size:]
	}
	return true
}

// hasPrefixFoldSpaced is hasPrefixFold where a space in prefix matches a
// run of one or more white space runes in s.
func hasPrefixFoldSpaced(s, prefix string) bool {
	for _, p := range prefix {
		r, size := utf8.DecodeRuneInString(s)
		if size == 0 {
			return false
		}
		if p != ' ' {
			if !foldEqual(r, p) {
				return false
			}
			s = s[size:]
			continue
		}
		if !unicode.IsSpace(r) {
			return false
		}
		for size > 0 && unicode.IsSpace(r) {
			s = s[size:]
			r, size = utf8.DecodeRuneInString(s)
		}
	}
	return true
}

// hasSuffixFold is hasPrefixFold at the end of s.
func hasSuffixFold(s, suffix string) bool {
	for len(suffix) > 0 {
		p, psize := utf8.DecodeLastRuneInString(suffix)
		r, size := utf8.DecodeLastRuneInString(s)
		if size == 0 || !foldEqual(r, p) {
			return false
		}
		s, suffix = s[:len(s)-size], suffix[:len(suffix)-psize]
	}
	return true
}

// foldEqual reports whether a and b are in the same simple case-folding
// orbit.
func foldEqual(a, b rune) bool {
	if a == b {
		return true
	}
	if a < utf8.RuneSelf && b < utf8.RuneSelf {
		// Two ASCII runes fold together only as the cases of a letter.
		l := a | 0x20
		return l == b|0x20 && 'a' <= l && l <= 'z'
	}
	for f := unicode.SimpleFold(a); f != a; f = unicode.SimpleFold(f) {
		if f == b {
			return true
		}
	}
	return false
}
