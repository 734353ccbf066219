package mailparse

import (
	netmail "net/mail"
	"strings"
	"time"
)

// commonDateLayout is the layout of nearly every Date field ("Fri, 4 Dec
// 2026 14:00:00 +0000"): the first of net/mail's layouts that parses a
// field starting with a day name and ending with a numeric zone.
const commonDateLayout = "Mon, 2 Jan 2006 15:04:05 -0700"

// parseDate is net/mail.ParseDate, which mail.Header.Date calls, with a
// shortcut for the common form. ParseDate tries its layouts in turn and
// builds an error for each that fails: 24 of them fail on the common form
// before the one that parses it. Where the shortcut applies, ParseDate
// would parse exactly v (no CR, nothing to skip before it, nothing after
// its numeric zone) with the layouts before commonDateLayout failing on
// the day name they do not have, so both return the same time. Any other
// field, and any that commonDateLayout does not parse, goes to ParseDate.
func parseDate(v string) (time.Time, error) {
	if commonDateForm(v) {
		if t, err := time.Parse(commonDateLayout, v); err == nil {
			return t, nil
		}
	}
	return netmail.ParseDate(v)
}

// commonDateForm reports whether v starts with an ASCII letter, holds no
// CR and has its first '+' or '-' five bytes before its end, as a numeric
// zone.
func commonDateForm(v string) bool {
	if len(v) < len(commonDateLayout)-2 || strings.IndexByte(v, '\r') >= 0 {
		return false
	}
	if c := v[0] | 0x20; c < 'a' || c > 'z' {
		return false
	}
	return strings.IndexAny(v, "+-") == len(v)-5
}
