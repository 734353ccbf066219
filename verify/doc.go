// Package verify decides whether the sender of an inbound email owns the
// address in its From header.
//
// Userlike identifies a contact by email address, and that address unlocks
// the contact's earlier conversations, so a message is posted under its From
// address only when Verify says so. The checks, in order:
//
//  1. The message must have exactly one From header holding exactly one
//     mailbox; Sender, Reply-To and the display name never change the
//     identity.
//  2. An exact address or exact domain listed in Options.Allow passes.
//  3. Require "none" disables verification (Result "none").
//  4. The topmost Authentication-Results header (RFC 8601) whose authserv-id
//     is in Options.TrustedAuthservIDs decides: dmarc=pass for the From
//     domain, else (when the domain publishes no DMARC policy) an aligned
//     dkim=pass, else an aligned spf=pass. Lower headers and headers of other
//     authserv-ids count for nothing: they may have come with the message.
//  5. Without such a header, and only with Options.SelfDKIM, the DKIM
//     signatures are verified here; a valid, unexpired signature whose
//     domain aligns with the From domain passes.
//
// Everything else fails, with a Reason that says what was found.
//
// Domains are compared in their lower-cased ASCII (punycode) form, so a
// Unicode From domain and a punycode header.from align. Relaxed alignment
// means the same organizational domain per the Public Suffix List; strict
// alignment means equal domains.
//
// ARC (RFC 8617) is ignored: honouring an ARC chain means trusting the
// authentication results of every intermediary that sealed it, which needs
// full chain validation and a list of trusted sealers. Neither is here, so
// ARC headers neither help nor hurt a message.
package verify
