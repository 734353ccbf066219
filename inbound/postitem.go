package inbound

import (
	"encoding/json"
	"errors"
	"fmt"
)

// postItem is one queued chat message as kept in the ledger. The Userlike
// body is built at POST time, so that media URLs are signed then and stay
// valid for the whole url_ttl even after a long outage.
//
// In inbound_posts an item is a kind byte and its value: 't' and the text,
// or 'm' and the media id. The poster reads it back with no decoding
// beyond that byte (a 2-20 KB text as a JSON string cost about 4% of a
// backlog's CPU to unquote). Rows recorded before that hold the JSON
// object {"text": ...} or {"media": ...}, which decodePost reads too.
type postItem struct {
	Text    string `json:"text,omitempty"`
	MediaID string `json:"media,omitempty"`
}

// The kind bytes of an encoded postItem.
const (
	postText  = 't'
	postMedia = 'm'
)

// encode returns the item as kept in the ledger.
func (it postItem) encode() []byte {
	if it.MediaID != "" {
		return append([]byte{postMedia}, it.MediaID...)
	}
	return append([]byte{postText}, it.Text...)
}

// decodePost reads a queued post back, in either form.
func decodePost(b []byte) (postItem, error) {
	if len(b) == 0 {
		return postItem{}, errors.New("empty queued post")
	}
	switch b[0] {
	case postText:
		return postItem{Text: string(b[1:])}, nil
	case postMedia:
		return postItem{MediaID: string(b[1:])}, nil
	case '{':
		var it postItem
		if err := json.Unmarshal(b, &it); err != nil {
			return postItem{}, err
		}
		return it, nil
	}
	return postItem{}, fmt.Errorf("queued post of unknown kind %q", b[0])
}
