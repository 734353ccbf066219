package mailparse

import (
	"bufio"
	"bytes"
	"strings"
)

// reportState collects what the parts of a multipart/report say until the
// message is complete.
type reportState struct {
	originalID string
	fields     map[string]string // first recipient block of a delivery status
	mdnID      string            // Original-Message-ID of a disposition notification
}

// parsePart reads a report part that was captured while streaming.
func (rs *reportState) parsePart(mediaType string, b []byte) {
	switch mediaType {
	case "message/delivery-status", "message/global-delivery-status":
		if rs.fields == nil {
			rs.fields = deliveryStatusFields(b)
		}
	case "message/disposition-notification", "message/global-disposition-notification":
		blocks := fieldBlocks(b)
		for _, bl := range blocks {
			if ids := msgIDTokens(bl["original-message-id"]); len(ids) > 0 && rs.mdnID == "" {
				rs.mdnID = ids[0]
			}
		}
	case "text/rfc822-headers", "message/global-headers":
		if rs.originalID == "" {
			_, rs.originalID = peekHeader(b)
		}
	}
}

// fill copies the collected values into r.
func (rs *reportState) fill(r *Report) {
	r.OriginalMessageID = rs.originalID
	if r.OriginalMessageID == "" {
		r.OriginalMessageID = rs.mdnID
	}
	f := rs.fields
	if f == nil {
		return
	}
	r.Action = strings.ToLower(collapseSpace(f["action"]))
	if st := strings.Fields(f["status"]); len(st) > 0 {
		r.Status = st[0]
	}
	r.DiagnosticCode = stripTypePrefix(f["diagnostic-code"])
	r.FinalRecipient = stripTypePrefix(f["final-recipient"])
	if r.FinalRecipient == "" {
		r.FinalRecipient = stripTypePrefix(f["original-recipient"])
	}
}

// deliveryStatusFields returns the fields of the first per-recipient block
// of a message/delivery-status body (RFC 3464): the blocks after the
// per-message one, preferring one with an Action.
func deliveryStatusFields(b []byte) map[string]string {
	blocks := fieldBlocks(b)
	if len(blocks) == 0 {
		return nil
	}
	for _, bl := range blocks {
		if bl["action"] != "" && (bl["final-recipient"] != "" || bl["original-recipient"] != "") {
			return bl
		}
	}
	for _, bl := range blocks {
		if bl["action"] != "" || bl["status"] != "" {
			return bl
		}
	}
	return blocks[len(blocks)-1]
}

// fieldBlocks splits b into blank-line separated blocks of "Name: value"
// fields (folded lines joined); keys are lower-cased and the first value of
// a name wins.
func fieldBlocks(b []byte) []map[string]string {
	var blocks []map[string]string
	cur := map[string]string{}
	lastKey := ""
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 4096), len(b)+1)
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), "\r")
		if strings.TrimSpace(line) == "" {
			if len(cur) > 0 {
				blocks = append(blocks, cur)
				cur = map[string]string{}
			}
			lastKey = ""
			continue
		}
		if line[0] == ' ' || line[0] == '\t' {
			if lastKey != "" {
				cur[lastKey] += " " + strings.TrimSpace(line)
			}
			continue
		}
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			lastKey = ""
			continue
		}
		k = strings.ToLower(strings.TrimSpace(k))
		if _, dup := cur[k]; dup {
			lastKey = ""
			continue
		}
		cur[k] = strings.TrimSpace(v)
		lastKey = k
	}
	if len(cur) > 0 {
		blocks = append(blocks, cur)
	}
	return blocks
}

// stripTypePrefix turns "rfc822; user@example.com" into "user@example.com"
// and "smtp; 550 5.1.1 unknown" into "550 5.1.1 unknown".
func stripTypePrefix(v string) string {
	v = collapseSpace(v)
	if t, rest, ok := strings.Cut(v, ";"); ok && t != "" && !strings.ContainsAny(t, " \t") {
		return strings.TrimSpace(rest)
	}
	return v
}
