// Package userlike speaks Userlike's Custom Channel API for mailgate.
//
// Every wire-format decision (the inbound JSON body mailgate posts, the
// lenient decoding of the outbound JSON Userlike posts to the webhook, the
// fallback idempotency key, and payload redaction for debug logs) lives in
// wire.go, so that adapting to a newer or stricter schema is a one-file
// change. The HTTP client that delivers inbound bodies lives in client.go.
//
// The contract this package implements, including the keys the outbound
// decoder tries, is described in userlike-custom-channel.md of mailgate's
// design documents.
package userlike
