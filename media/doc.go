// Package media stores the attachment files that mailgate hands to Userlike
// and serves them at signed, expiring URLs.
//
// A Library owns a directory of content-addressed files
// (Dir/<sha256[0:2]>/<sha256>) and an Index of records, one per stored
// attachment. Each Put gets its own random record ID, so two messages that
// carry the same file have two IDs (and two URLs) but share one file on disk.
//
// URLs have the form
//
//	<PublicURL>/media/<id>/<filename>?exp=<unix seconds>&sig=<base64url HMAC-SHA256>
//
// and are checked by Library.ServeHTTP before anything is looked up, so a
// URL cannot be guessed or altered. The package knows nothing about mail or
// Userlike: it deals only in bytes, records and HTTP.
package media
