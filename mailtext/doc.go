// Package mailtext turns the body text of a customer email into what a
// support operator should see.
//
// It offers three pure, allocation-light transformations and nothing else: no
// I/O, no state.
//
//   - Trim cuts the quoted history and the signature off a plain-text reply,
//     understanding the attribution lines, header blocks and separators that
//     common mail clients write in many languages, keeping the answers of
//     interleaved ("bottom-posted") replies with the quotes they answer and
//     the content of forwarded messages. It is a set of small, named rules
//     (the Rule constants); Result.Cuts says which rule cut what.
//   - DecodeFlowed decodes RFC 3676 format=flowed text.
//   - HTMLToText and HTMLToTextTrimmed render an HTML body as readable text;
//     the latter first removes the quoted parts that Gmail, Apple Mail,
//     Thunderbird, Outlook and others mark in their HTML.
package mailtext
