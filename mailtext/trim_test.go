package mailtext

import (
	"strings"
	"testing"
)

// trimCase is one email body and what Trim must make of it.
type trimCase struct {
	name    string
	in      string
	want    string // Result.Text
	trimmed bool   // Result.Trimmed
	quote   string // a substring Result.Quote must contain, if set
	sig     string // Result.Signature, if set
}

var trimCases = []trimCase{
	// Attribution lines, one per language.
	{
		name:    "english gmail attribution",
		in:      "Thanks, that fixed it.\n\nOn Tue, 3 Mar 2026 at 10:15, Jane Doe <jane@example.com> wrote:\n\n> Please restart the router.\n> \n> Jane\n",
		want:    "Thanks, that fixed it.",
		trimmed: true,
		quote:   "> Please restart the router.",
	},
	{
		name:    "english thunderbird attribution without quote marks",
		in:      "Yes, the order number is 4711.\n\nOn 3/3/26 10:15 AM, Support Team wrote:\nCould you send us your order number?\nKind regards\n",
		want:    "Yes, the order number is 4711.",
		trimmed: true,
		quote:   "Could you send us your order number?",
	},
	{
		name:    "german attribution",
		in:      "Vielen Dank, hat geklappt.\n\nAm Di., 3. März 2026 um 10:15 Uhr schrieb Jane Doe <jane@example.com>:\n> Bitte starten Sie den Router neu.\n",
		want:    "Vielen Dank, hat geklappt.",
		trimmed: true,
	},
	{
		name:    "german gmail mobile attribution",
		in:      "Passt, danke!\n\nJane Doe <jane@example.com> schrieb am Di., 3. März 2026, 10:15:\n\n> Ist alles in Ordnung?\n",
		want:    "Passt, danke!",
		trimmed: true,
	},
	{
		name:    "french attribution with no-break space before colon",
		in:      "Merci beaucoup, c'est réglé.\n\nLe mar. 3 mars 2026 à 10:15, Jane Doe <jane@example.com> a écrit\u00a0:\n\n> Pouvez-vous redémarrer le routeur ?\n",
		want:    "Merci beaucoup, c'est réglé.",
		trimmed: true,
	},
	{
		name:    "spanish attribution",
		in:      "Gracias, ya funciona.\n\nEl mar, 3 mar 2026 a las 10:15, Jane Doe (<jane@example.com>) escribió:\n> ¿Puede reiniciar el router?\n",
		want:    "Gracias, ya funciona.",
		trimmed: true,
	},
	{
		name:    "italian attribution",
		in:      "Grazie, ora funziona.\n\nIl giorno mar 3 mar 2026 alle ore 10:15 Jane Doe <jane@example.com> ha scritto:\n> Può riavviare il router?\n",
		want:    "Grazie, ora funziona.",
		trimmed: true,
	},
	{
		name:    "dutch attribution",
		in:      "Bedankt, het werkt weer.\n\nOp di 3 mrt 2026 om 10:15 schreef Jane Doe <jane@example.com>:\n> Kunt u de router herstarten?\n",
		want:    "Bedankt, het werkt weer.",
		trimmed: true,
	},
	{
		name:    "dutch apple mail attribution",
		in:      "Top, dank je.\n\nOp 3 mrt. 2026, om 10:15 heeft Jane Doe <jane@example.com> het volgende geschreven:\n\n> Is het gelukt?\n",
		want:    "Top, dank je.",
		trimmed: true,
	},
	{
		name:    "portuguese attribution",
		in:      "Obrigado, resolvido.\n\nEm ter., 3 de mar. de 2026 às 10:15, Jane Doe <jane@example.com> escreveu:\n> Pode reiniciar o roteador?\n",
		want:    "Obrigado, resolvido.",
		trimmed: true,
	},
	{
		name:    "polish gmail attribution",
		in:      "Dziękuję, działa.\n\nwt., 3 mar 2026 o 10:15 Jane Doe <jane@example.com> napisał(a):\n> Czy może Pan zrestartować router?\n",
		want:    "Dziękuję, działa.",
		trimmed: true,
	},
	{
		name:    "polish thunderbird attribution",
		in:      "Dziękuję.\n\nW dniu 3.03.2026 o 10:15, Jane Doe pisze:\nCzy może Pan zrestartować router?\n",
		want:    "Dziękuję.",
		trimmed: true,
	},
	{
		name:    "swedish attribution",
		in:      "Tack, nu fungerar det.\n\nDen tis 3 mars 2026 kl 10:15 skrev Jane Doe <jane@example.com>:\n> Kan du starta om routern?\n",
		want:    "Tack, nu fungerar det.",
		trimmed: true,
	},
	{
		name:    "swedish short attribution",
		in:      "Tack!\n\nJane Doe <jane@example.com> skrev:\n> Kan du starta om routern?\n",
		want:    "Tack!",
		trimmed: true,
	},
	{
		name:    "russian attribution",
		in:      "Спасибо, всё работает.\n\n03.03.2026 10:15, Jane Doe пишет:\n> Перезагрузите, пожалуйста, роутер.\n",
		want:    "Спасибо, всё работает.",
		trimmed: true,
	},
	{
		name:    "russian attribution napisal",
		in:      "Спасибо.\n\nвт, 3 мар. 2026 г. в 10:15, Jane Doe <jane@example.com> написал(а):\nПерезагрузите роутер.\n",
		want:    "Спасибо.",
		trimmed: true,
	},
	{
		name:    "russian gmail verbless attribution",
		in:      "Спасибо.\n\nвт, 3 мар. 2026 г. в 10:15, Jane Doe <jane@example.com>:\n\n> Перезагрузите роутер.\n",
		want:    "Спасибо.",
		trimmed: true,
	},
	{
		name:    "danish attribution",
		in:      "Tak, det virker.\n\nDen 3. mar. 2026 kl. 10.15 skrev Jane Doe <jane@example.com>:\n> Kan du genstarte routeren?\n",
		want:    "Tak, det virker.",
		trimmed: true,
	},
	{
		name:    "norwegian attribution",
		in:      "Takk, det fungerer.\n\ntir. 3. mar. 2026 kl. 10:15 skrev Jane Doe <jane@example.com>:\nKan du starte ruteren på nytt?\n",
		want:    "Takk, det fungerer.",
		trimmed: true,
	},

	{
		name:    "attribution in a language without a known verb",
		in:      "Terima kasih.\n\nPada Sel, 3 Mar 2026 pukul 10.15 Jane Doe <jane@example.com> mengatakan:\nApakah sudah berhasil?\n",
		want:    "Terima kasih.",
		trimmed: true,
	},

	// Attributions wrapped over several lines.
	{
		name:    "gmail attribution wrapped inside the address",
		in:      "Works now.\n\nOn Tue, 3 Mar 2026 at 10:15, Jane Doe <\njane@example.com> wrote:\n\n> Try again please.\n",
		want:    "Works now.",
		trimmed: true,
	},
	{
		name:    "gmail attribution wrapped before wrote",
		in:      "Works now.\n\nOn Tue, Mar 3, 2026 at 10:15 AM Jane Doe <jane@example.com>\nwrote:\n\n> Try again please.\n",
		want:    "Works now.",
		trimmed: true,
	},
	{
		name:    "apple mail attribution over three lines",
		in:      "Works now.\n\nOn Mar 3, 2026, at 10:15,\nJane Doe\n<jane@example.com> wrote:\nTry again please.\n",
		want:    "Works now.",
		trimmed: true,
	},
	{
		name:    "german attribution wrapped",
		in:      "Danke!\n\nAm Di., 3. März 2026 um 10:15 Uhr schrieb Jane Doe <\njane@example.com>:\n\n> Bitte neu starten.\n",
		want:    "Danke!",
		trimmed: true,
	},
	{
		name:    "text line above an attribution is not joined with it",
		in:      "On my way to the office now.\nOn Tue, 3 Mar 2026 at 10:15, Jane Doe <jane@example.com> wrote:\n> When will you be here?\n",
		want:    "On my way to the office now.",
		trimmed: true,
	},

	{
		name:    "short text line above a name-first attribution",
		in:      "Ok 3 items please\nJane Doe <jane@example.com> wrote:\n> How many?\n",
		want:    "Ok 3 items please",
		trimmed: true,
	},

	// Outlook header blocks.
	{
		name:    "outlook english header block with rule",
		in:      "Please find the invoice attached.\n\n________________________________\nFrom: Support <support@example.com>\nSent: Tuesday, March 3, 2026 10:15 AM\nTo: Jane Doe <jane@example.com>\nSubject: RE: Invoice\n\nCould you send the invoice?\n",
		want:    "Please find the invoice attached.",
		trimmed: true,
		quote:   "Could you send the invoice?",
	},
	{
		name:    "outlook bold header block",
		in:      "Here it is.\n\n*From:* Support <support@example.com>\n*Sent:* Tuesday, March 3, 2026 10:15 AM\n*To:* Jane Doe <jane@example.com>\n*Subject:* RE: Invoice\n\nCould you send the invoice?\n",
		want:    "Here it is.",
		trimmed: true,
	},
	{
		name:    "outlook german header block",
		in:      "Anbei die Rechnung.\n\nVon: Support [mailto:support@example.com]\nGesendet: Dienstag, 3. März 2026 10:15\nAn: Jane Doe\nBetreff: AW: Rechnung\n\nKönnen Sie die Rechnung schicken?\n",
		want:    "Anbei die Rechnung.",
		trimmed: true,
	},
	{
		name:    "outlook french header block",
		in:      "Voici la facture.\n\nDe : Support <support@example.com>\nEnvoyé : mardi 3 mars 2026 10:15\nÀ : Jane Doe <jane@example.com>\nObjet : RE: Facture\n\nPouvez-vous envoyer la facture ?\n",
		want:    "Voici la facture.",
		trimmed: true,
	},
	{
		name:    "outlook spanish header block",
		in:      "Adjunto la factura.\n\nDe: Support <support@example.com>\nEnviado el: martes, 3 de marzo de 2026 10:15\nPara: Jane Doe <jane@example.com>\nAsunto: RE: Factura\n\n¿Puede enviar la factura?\n",
		want:    "Adjunto la factura.",
		trimmed: true,
	},
	{
		name:    "outlook italian header block",
		in:      "Ecco la fattura.\n\nDa: Support <support@example.com>\nInviato: martedì 3 marzo 2026 10:15\nA: Jane Doe <jane@example.com>\nOggetto: R: Fattura\n\nPuò inviare la fattura?\n",
		want:    "Ecco la fattura.",
		trimmed: true,
	},
	{
		name:    "outlook dutch header block",
		in:      "Hierbij de factuur.\n\nVan: Support <support@example.com>\nVerzonden: dinsdag 3 maart 2026 10:15\nAan: Jane Doe <jane@example.com>\nOnderwerp: RE: Factuur\n\nKunt u de factuur sturen?\n",
		want:    "Hierbij de factuur.",
		trimmed: true,
	},
	{
		name:    "outlook polish header block",
		in:      "W załączniku faktura.\n\nOd: Support <support@example.com>\nWysłane: wtorek, 3 marca 2026 10:15\nDo: Jane Doe <jane@example.com>\nTemat: RE: Faktura\n\nCzy może Pan wysłać fakturę?\n",
		want:    "W załączniku faktura.",
		trimmed: true,
	},
	{
		name:    "outlook swedish header block",
		in:      "Här är fakturan.\n\nFrån: Support <support@example.com>\nSkickat: den 3 mars 2026 10:15\nTill: Jane Doe <jane@example.com>\nÄmne: SV: Faktura\n\nKan du skicka fakturan?\n",
		want:    "Här är fakturan.",
		trimmed: true,
	},
	{
		name:    "outlook russian header block",
		in:      "Счёт во вложении.\n\nОт: Support <support@example.com>\nОтправлено: 3 марта 2026 г. 10:15\nКому: Jane Doe <jane@example.com>\nТема: RE: Счёт\n\nПришлите, пожалуйста, счёт.\n",
		want:    "Счёт во вложении.",
		trimmed: true,
	},
	{
		name:    "outlook portuguese header block with blank lines between fields",
		in:      "Segue a fatura.\n\nDe: Support <support@example.com>\n\nEnviada em: terça-feira, 3 de março de 2026 10:15\n\nPara: Jane Doe <jane@example.com>\n\nAssunto: RE: Fatura\n\nPode enviar a fatura?\n",
		want:    "Segue a fatura.",
		trimmed: true,
	},
	{
		name:    "hotmail header block starting with date",
		in:      "Done.\n\nDate: Tue, 3 Mar 2026 10:15:00 +0100\nSubject: Password reset\nFrom: support@example.com\nTo: jane@example.com\n\nPlease reset your password.\n",
		want:    "Done.",
		trimmed: true,
	},
	{
		name:    "outlook header block squashed onto one line",
		in:      "Done.\n\nFrom: Support <support@example.com> Sent: Tuesday, March 3, 2026 10:15 AM To: Jane Doe Subject: RE: Reset\n\nPlease reset your password.\n",
		want:    "Done.",
		trimmed: true,
	},

	// Separators.
	{
		name:    "original message separator",
		in:      "See below.\n\n-----Original Message-----\nFrom: Support\nSent: Tuesday\n\nOld text\n",
		want:    "See below.",
		trimmed: true,
	},
	{
		name:    "german original message separator",
		in:      "Siehe unten.\n\n-----Ursprüngliche Nachricht-----\nVon: Support\nAlter Text\n",
		want:    "Siehe unten.",
		trimmed: true,
	},
	{
		name:    "translated original message separators",
		in:      "Voir ci-dessous.\n-----Message d'origine-----\nAncien texte\n",
		want:    "Voir ci-dessous.",
		trimmed: true,
	},
	{name: "spanish separator", in: "Ver abajo.\n-----Mensaje original-----\nTexto\n", want: "Ver abajo.", trimmed: true},
	{name: "italian separator", in: "Vedi sotto.\n-----Messaggio originale-----\nTesto\n", want: "Vedi sotto.", trimmed: true},
	{name: "dutch separator", in: "Zie hieronder.\n-----Oorspronkelijk bericht-----\nTekst\n", want: "Zie hieronder.", trimmed: true},
	{name: "portuguese separator", in: "Veja abaixo.\n-----Mensagem original-----\nTexto\n", want: "Veja abaixo.", trimmed: true},
	{name: "polish separator", in: "Poniżej.\n-----Wiadomość oryginalna-----\nTekst\n", want: "Poniżej.", trimmed: true},
	{name: "swedish separator", in: "Se nedan.\n-----Ursprungligt meddelande-----\nText\n", want: "Se nedan.", trimmed: true},
	{name: "russian separator", in: "См. ниже.\n-----Исходное сообщение-----\nТекст\n", want: "См. ниже.", trimmed: true},
	{
		name:    "gmail forward with text above",
		in:      "Can you help with this?\n\n---------- Forwarded message ---------\nFrom: Shop <shop@example.com>\nDate: Tue, 3 Mar 2026 at 10:15\nSubject: Your order\nTo: <jane@example.com>\n\nYour order has shipped.\n",
		want:    "Can you help with this?\n\nForwarded: from Shop <shop@example.com>, Tue, 3 Mar 2026 at 10:15, Your order\n\nYour order has shipped.",
		trimmed: true,
	},
	{
		name:    "apple forward with text above",
		in:      "FYI\n\nBegin forwarded message:\n\nFrom: Shop <shop@example.com>\nSubject: Your order\nDate: 3 March 2026 at 10:15:00 CET\nTo: jane@example.com\n\nYour order has shipped.\n",
		want:    "FYI\n\nForwarded: from Shop <shop@example.com>, 3 March 2026 at 10:15:00 CET, Your order\n\nYour order has shipped.",
		trimmed: true,
	},
	{
		name:    "forward only keeps the forwarded content",
		in:      "---------- Forwarded message ---------\nFrom: Shop <shop@example.com>\nDate: Tue, 3 Mar 2026 at 10:15\nSubject: Your order\nTo: <jane@example.com>\n\nYour order has shipped.\n",
		want:    "Forwarded: from Shop <shop@example.com>, Tue, 3 Mar 2026 at 10:15, Your order\n\nYour order has shipped.",
		trimmed: true,
	},
	{
		name:    "help desk reply marker",
		in:      "The problem is back.\n\n##- Please type your reply above this line -##\n\nYour ticket 123 was updated.\n",
		want:    "The problem is back.",
		trimmed: true,
	},

	// '>' quote blocks.
	{
		name:    "nested quote block without attribution",
		in:      "I agree.\n\n> > first\n> second\n>\n",
		want:    "I agree.",
		trimmed: true,
	},
	{
		name:    "interleaved reply keeps the answers with their questions",
		in:      "On Tue, 3 Mar 2026 at 10:15, Jane Doe <jane@example.com> wrote:\n> What is your order number?\n\n4711\n\n> Which colour?\n\nBlue, please.\n",
		want:    "> What is your order number?\n\n4711\n\n> Which colour?\n\nBlue, please.",
		trimmed: true,
		quote:   "On Tue, 3 Mar 2026 at 10:15, Jane Doe <jane@example.com> wrote:",
	},
	{
		name:    "bottom posted answer after a quote",
		in:      "> Could you check the logs?\n> Thanks\nI checked them, nothing unusual.\n",
		want:    "> Could you check the logs?\n> Thanks\nI checked them, nothing unusual.",
		trimmed: false,
	},
	{
		name:    "attribution of unknown language before a quote block",
		in:      "Kiitos!\n\nti 3.3.2026 klo 10.15 Jane Doe (jane@example.com) kirjoitti:\n> Toimiiko nyt?\n",
		want:    "Kiitos!",
		trimmed: true,
	},
	{
		name:    "only a quote keeps everything below a note",
		in:      "> just quoted\n> text\n",
		want:    QuoteOnlyNote + "\n\n> just quoted\n> text",
		trimmed: false,
	},

	// Signatures.
	{
		name:    "rfc 3676 signature delimiter",
		in:      "Please call me back.\n\n-- \nJane Doe\nACME Corp.\n+49 30 1234567\n",
		want:    "Please call me back.",
		trimmed: true,
		sig:     "Jane Doe\nACME Corp.\n+49 30 1234567",
	},
	{
		name:    "signature delimiter without space",
		in:      "Please call me back.\n--\nJane Doe\nACME Corp.\n",
		want:    "Please call me back.",
		trimmed: true,
		sig:     "Jane Doe\nACME Corp.",
	},
	{
		name:    "signature and quote together",
		in:      "Sure.\n\n-- \nJane\n\nOn Tue, 3 Mar 2026 at 10:15, Support <support@example.com> wrote:\n> Can we call you?\n",
		want:    "Sure.",
		trimmed: true,
		sig:     "Jane",
	},
	{name: "sent from my iphone", in: "Yes please.\n\nSent from my iPhone\n", want: "Yes please.", trimmed: true, sig: "Sent from my iPhone"},
	{name: "sent from my ipad", in: "Yes please.\n\nSent from my iPad", want: "Yes please.", trimmed: true},
	{name: "sent from my android", in: "Yes please.\nSent from my Android phone", want: "Yes please.", trimmed: true},
	{name: "sent from mail for windows", in: "Yes please.\n\nSent from Mail for Windows\n", want: "Yes please.", trimmed: true},
	{name: "get outlook for ios with link", in: "Yes please.\n\nGet Outlook for iOS<https://aka.ms/o0ukef>\n", want: "Yes please.", trimmed: true},
	{name: "sent from outlook for android", in: "Yes please.\n\nSent from Outlook for Android", want: "Yes please.", trimmed: true},
	{name: "sent from yahoo mail", in: "Yes please.\n\nSent from Yahoo Mail on Android", want: "Yes please.", trimmed: true},
	{name: "sent from samsung", in: "Yes please.\n\nSent from my Samsung Galaxy smartphone.", want: "Yes please.", trimmed: true},
	{name: "proton mail", in: "Yes please.\n\nSent with Proton Mail secure email.", want: "Yes please.", trimmed: true},
	{name: "german iphone", in: "Ja, bitte.\n\nVon meinem iPhone gesendet", want: "Ja, bitte.", trimmed: true},
	{name: "french iphone", in: "Oui, merci.\n\nEnvoyé de mon iPhone", want: "Oui, merci.", trimmed: true},
	{name: "spanish iphone", in: "Sí, gracias.\n\nEnviado desde mi iPhone", want: "Sí, gracias.", trimmed: true},
	{name: "italian iphone", in: "Sì, grazie.\n\nInviato da iPhone", want: "Sì, grazie.", trimmed: true},
	{name: "dutch iphone", in: "Ja, graag.\n\nVerzonden vanaf mijn iPhone", want: "Ja, graag.", trimmed: true},
	{name: "portuguese iphone", in: "Sim, obrigado.\n\nEnviado do meu iPhone", want: "Sim, obrigado.", trimmed: true},
	{name: "polish iphone", in: "Tak, dziękuję.\n\nWysłane z iPhone'a", want: "Tak, dziękuję.", trimmed: true},
	{name: "swedish iphone", in: "Ja, tack.\n\nSkickat från min iPhone", want: "Ja, tack.", trimmed: true},
	{name: "russian iphone", in: "Да, спасибо.\n\nОтправлено с iPhone", want: "Да, спасибо.", trimmed: true},
	{
		name:    "mobile signature above a quote",
		in:      "Yes, tomorrow works.\n\nSent from my iPhone\n\nOn Mar 3, 2026, at 10:15, Support <support@example.com> wrote:\n\n> Does tomorrow work for you?\n",
		want:    "Yes, tomorrow works.",
		trimmed: true,
	},
	{
		name:    "mobile signature with empty reply keeps everything",
		in:      "Sent from my iPhone\n\nOn Mar 3, 2026, at 10:15, Support <support@example.com> wrote:\n\n> Does tomorrow work?\n",
		want:    QuoteOnlyNote + "\n\nSent from my iPhone\n\nOn Mar 3, 2026, at 10:15, Support <support@example.com> wrote:\n\n> Does tomorrow work?",
		trimmed: false,
	},

	{
		name:    "mobile signature above history of unknown form",
		in:      "Fine by me.\n\nSent from my iPhone\n\nSupport Team said at some point\nYour ticket was updated.\n",
		want:    "Fine by me.",
		trimmed: true,
		sig:     "Sent from my iPhone",
		quote:   "Your ticket was updated.",
	},
	{
		name:    "signature delimiter above app signature",
		in:      "Fine by me.\n-- \nJane Doe\nSent from my iPhone\n",
		want:    "Fine by me.",
		trimmed: true,
		sig:     "Jane Doe\nSent from my iPhone",
	},

	// Text that must be kept.
	{
		name: "sent via a carrier is no signature",
		in:   "Where is my parcel?\n\nSent via DHL on Monday\n",
		want: "Where is my parcel?\n\nSent via DHL on Monday",
	},
	{
		name: "wrote mid-sentence",
		in:   "I wrote to you yesterday about the invoice: it is still wrong.\nMy colleague wrote the order number on it.\n",
		want: "I wrote to you yesterday about the invoice: it is still wrong.\nMy colleague wrote the order number on it.",
	},
	{
		name: "from line in prose",
		in:   "Hello,\nFrom: my new address, please send the parcel.\nThanks\n",
		want: "Hello,\nFrom: my new address, please send the parcel.\nThanks",
	},
	{
		name: "from and to in a travel request",
		in:   "I need a transfer.\nFrom: Berlin\nTo: Munich\nDate: 3 March 2026\nThanks\n",
		want: "I need a transfer.\nFrom: Berlin\nTo: Munich\nDate: 3 March 2026\nThanks",
	},
	{
		name: "greater than sign inside text",
		in:   "The total must be a > b.\nAnd 5 > 3 always.\n",
		want: "The total must be a > b.\nAnd 5 > 3 always.",
	},
	{
		name: "urls",
		in:   "See https://example.com/help?q=wrote:&from=me for details.\n",
		want: "See https://example.com/help?q=wrote:&from=me for details.",
	},
	{
		name: "code",
		in:   "My script fails:\n\n    if (a > b) {\n        return -- x;\n    }\n\nAny idea?\n",
		want: "My script fails:\n\n    if (a > b) {\n        return -- x;\n    }\n\nAny idea?",
	},
	{
		name: "dash dash in prose is no signature",
		in:   "Here is a fix -- this is not a signature.\n\nBye\n",
		want: "Here is a fix -- this is not a signature.\n\nBye",
	},
	{
		name: "sent from in a sentence is no signature",
		in:   "Here is another email.\n\nSent from my desk, is much easier than my phone.\n",
		want: "Here is another email.\n\nSent from my desk, is much easier than my phone.",
	},
	{
		name: "line starting with On and a colon",
		in:   "On your server you can run:\n\n    telnet 127.0.0.1 25\n\nDoes that work?\n",
		want: "On your server you can run:\n\n    telnet 127.0.0.1 25\n\nDoes that work?",
	},
	{
		name: "prose ending in wrote without date is kept",
		in:   "This is what the technician wrote:\nThe device is broken.\nPlease replace it.\n",
		want: "This is what the technician wrote:\nThe device is broken.\nPlease replace it.",
	},

	// More clients.
	{
		name:    "zoho attribution between dashes",
		in:      "Thanks.\n\n---- On Tue, 03 Mar 2026 10:15:00 +0100 Support <support@example.com> wrote ----\n\nHi Jane\n",
		want:    "Thanks.",
		trimmed: true,
	},
	{
		name:    "old gmail attribution without colon",
		in:      "Thanks\n\n2026/3/3 Support <support@example.com>\n\n> Hi\n",
		want:    "Thanks",
		trimmed: true,
	},
	{
		name:    "japanese gmail attribution",
		in:      "ありがとう\n\n2026年3月3日(火) 10:15 Support <support@example.com>:\n\n> こんにちは\n",
		want:    "ありがとう",
		trimmed: true,
	},
	{
		name:    "chinese attribution",
		in:      "好的\n\nSupport <support@example.com> 于2026年3月3日周二 上午10:15写道：\n\n> 你好\n",
		want:    "好的",
		trimmed: true,
	},
	{
		name:    "thunderbird original message with fields",
		in:      "Ok\n\n\n\n------ Original Message ------\nFrom: \"Support\" <support@example.com>\nTo: jane@example.com\nSent: 3/3/2026 10:15:00 AM\nSubject: Re: x\n\nHi\n",
		want:    "Ok",
		trimmed: true,
	},
	{
		name:    "outlook header below the sender's own signature",
		in:      "Ja das passt.\n\nMit freundlichen Grüßen\nMax Mustermann\n\nVon: Support <support@example.com>\nGesendet: Dienstag, 3. März 2026 10:15\nAn: max@example.com\nBetreff: Ihre Anfrage\n\nHallo\n",
		want:    "Ja das passt.\n\nMit freundlichen Grüßen\nMax Mustermann",
		trimmed: true,
	},
	{
		name:    "mail for windows signature with link above header",
		in:      "Sounds good.\n\nSent from Mail<https://go.microsoft.com/fwlink/?LinkId=550986> for Windows 10\n\nFrom: Support<mailto:support@example.com>\nSent: 03 March 2026 10:15\nTo: Jane<mailto:jane@example.com>\nSubject: Ticket\n\nHi\n",
		want:    "Sounds good.",
		trimmed: true,
	},
	{name: "verizon signature with comma", in: "See you.\n\nSent from my Verizon, Samsung Galaxy smartphone", want: "See you.", trimmed: true},
	{
		name: "prose quoting support with a date is kept",
		in:   "Dear support,\n\nOn 3 March 2026 your colleague wrote:\nWe will send a replacement.\n\nNothing happened since.\n",
		want: "Dear support,\n\nOn 3 March 2026 your colleague wrote:\nWe will send a replacement.\n\nNothing happened since.",
	},
	{
		name: "prose with I wrote and a time is kept",
		in:   "Hello,\n\nat 10:15 I wrote:\nplease cancel.\nStill waiting.\n",
		want: "Hello,\n\nat 10:15 I wrote:\nplease cancel.\nStill waiting.",
	},

	{
		name: "shell prompts are no quote",
		in:   "Hi team,\n\nmy setup:\n> node -v\nv20.1.0\n> npm -v\n10.2.0\n\nAny idea?\n",
		want: "Hi team,\n\nmy setup:\n> node -v\nv20.1.0\n> npm -v\n10.2.0\n\nAny idea?",
	},
	{
		name: "header-like prose without addresses is kept",
		in:   "Hello,\n\nmy order #12345:\nDate: 3 March 2026\nFrom: Berlin\nSubject: refund\n\nPlease help.\n",
		want: "Hello,\n\nmy order #12345:\nDate: 3 March 2026\nFrom: Berlin\nSubject: refund\n\nPlease help.",
	},
	{
		name:    "inline answers right below a quoted line",
		in:      "Hi Jane,\n> Can you send the invoice?\nSure, it is attached.\n",
		want:    "Hi Jane,\n> Can you send the invoice?\nSure, it is attached.",
		trimmed: false,
	},

	// Cleaning.
	{
		name: "crlf, trailing spaces and blank runs",
		in:   "\r\n\r\n  Hello  \r\n\r\n\r\n\r\nWorld\t\r\n\r\n",
		want: "Hello\n\nWorld",
	},
	{
		name: "a code block at the start keeps its indentation",
		in:   "    make build\n    ./bin/app\n\nfails with exit 2.\n",
		want: "    make build\n    ./bin/app\n\nfails with exit 2.",
	},
	{name: "empty input", in: "", want: ""},
	{name: "white space only", in: " \n\t\n", want: ""},
}

func TestTrim(t *testing.T) {
	if len(trimCases) < 40 {
		t.Fatalf("only %d cases", len(trimCases))
	}
	for _, tc := range trimCases {
		t.Run(tc.name, func(t *testing.T) {
			got := Trim(tc.in)
			if got.Text != tc.want {
				t.Errorf("Text =\n%q\nwant\n%q", got.Text, tc.want)
			}
			if got.Trimmed != tc.trimmed {
				t.Errorf("Trimmed = %v, want %v (quote %q, signature %q)", got.Trimmed, tc.trimmed, got.Quote, got.Signature)
			}
			if tc.quote != "" && !strings.Contains(got.Quote, tc.quote) {
				t.Errorf("Quote = %q, want it to contain %q", got.Quote, tc.quote)
			}
			if tc.sig != "" && got.Signature != tc.sig {
				t.Errorf("Signature = %q, want %q", got.Signature, tc.sig)
			}
			if !got.Trimmed && (got.Quote != "" || got.Signature != "") {
				t.Errorf("untrimmed result has quote %q, signature %q", got.Quote, got.Signature)
			}
		})
	}
}

func TestTrimIsIdempotent(t *testing.T) {
	for _, tc := range trimCases {
		once := Trim(tc.in).Text
		if twice := Trim(once).Text; twice != once {
			t.Errorf("%s: Trim(Trim(x)) = %q, Trim(x) = %q", tc.name, twice, once)
		}
	}
}

func BenchmarkTrim(b *testing.B) {
	var sb strings.Builder
	sb.WriteString("Hello,\n\nthanks for the quick answer. The router works again.\n\n")
	for i := range 40 {
		sb.WriteString("This is line ")
		sb.WriteString(strings.Repeat("x", i))
		sb.WriteString(" of my reply, and it mentions 10:15 and a > b.\n")
	}
	sb.WriteString("\nBest regards\nJane\n\nSent from my iPhone\n\n")
	sb.WriteString("On Tue, 3 Mar 2026 at 10:15, Support <support@example.com> wrote:\n\n")
	for range 100 {
		sb.WriteString("> quoted history line with some words in it\n")
	}
	in := sb.String()
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	for b.Loop() {
		Trim(in)
	}
}

// BenchmarkTrimPlainBody trims the plain bodies of the backlog bench
// (bench/mails.go): 2-20 KB of word lines up to 72 characters, a greeting
// and a closing, no quote; one op is ten bodies of 2, 4, ..., 20 KB.
func BenchmarkTrimPlainBody(b *testing.B) {
	words := strings.Fields(`order invoice delivery parcel account password
	refund upgrade plan subscription printer router cable screen battery
	please could you check again today tomorrow morning thanks regards
	the a my our your and but with without still since after before when
	works broken missing late twice again number reference customer`)
	var ins []string
	size, k := 0, 0
	for i := 1; i <= 10; i++ {
		var sb strings.Builder
		sb.WriteString("Hello support, [bm:bl-1]\n\n")
		line := 0
		for sb.Len() < i*2000 {
			w := words[(k*7919)%len(words)]
			k++
			if line+len(w) > 72 {
				sb.WriteString("\n")
				line = 0
			}
			sb.WriteString(w + " ")
			line += len(w) + 1
		}
		sb.WriteString("\n\nBest regards\nA customer\n")
		ins = append(ins, sb.String())
		size += sb.Len()
	}
	b.SetBytes(int64(size))
	b.ReportAllocs()
	for b.Loop() {
		for _, in := range ins {
			Trim(in)
		}
	}
}

// TestSplitLines: splitLines cuts text where strings.Split does and
// classifies each part as newLine does.
func TestSplitLines(t *testing.T) {
	for _, in := range []string{"", "\n", "a", "a\n", "\na", "a\n\nb\n", " > q \n\t\n-- \n\u00a0\nend", "\n\n\n"} {
		got := splitLines(in)
		want := strings.Split(in, "\n")
		if len(got) != len(want) {
			t.Fatalf("splitLines(%q): %d lines, strings.Split gives %d", in, len(got), len(want))
		}
		for i, w := range want {
			if got[i] != newLine(w) {
				t.Errorf("splitLines(%q)[%d] = %+v, want %+v", in, i, got[i], newLine(w))
			}
		}
	}
}
