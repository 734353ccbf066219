// Package smtpout turns an operator's reply into a MIME email and delivers
// it to an SMTP relay.
//
// Render builds the RFC 5322 message for a Reply: a multipart/alternative
// text and HTML body (inside multipart/mixed when there are attachments),
// threading headers, and every header value stripped of control characters
// so that nothing a customer or operator typed can add a header line.
//
// A Sender delivers a burst of Envelopes over one SMTP connection and
// reports, per message, whether the relay accepted it. Errors carry the
// relay's reply as an *SMTPError; IsPermanent tells the caller whether a
// retry can help.
//
// The package knows nothing of IMAP, Userlike or the store: the outbox
// worker that calls it decides what to send and what to do with the result.
// The sub-package safefetch fetches operator media URLs without letting a
// URL reach internal addresses.
package smtpout
