// Package wire holds the small readers of JSON protocol messages that the
// default dialect and the service dialects share.
package wire

import (
	"bytes"
	"math"
	"time"
)

// MaxControlSize bounds the messages a dialect parses for their type:
// protocol messages are small, application payloads need not be decoded.
const MaxControlSize = 1024

// MentionsAny reports whether data holds a "type" key and one of needles,
// a cheap test before a JSON message is decoded at all.
func MentionsAny(data []byte, needles ...[]byte) bool {
	if !bytes.Contains(data, []byte(`"type"`)) {
		return false
	}
	for _, n := range needles {
		if bytes.Contains(data, n) {
			return true
		}
	}
	return false
}

// maxSeconds is ten years: a lifetime beyond it is not meant.
const maxSeconds = 10 * 365 * 24 * 3600

// Seconds converts a JSON number of seconds; absent, negative or absurd
// values mean "not said" and give zero.
func Seconds(v *float64) time.Duration {
	if v == nil || *v <= 0 || math.IsNaN(*v) || *v > maxSeconds {
		return 0
	}
	return time.Duration(*v * float64(time.Second))
}
