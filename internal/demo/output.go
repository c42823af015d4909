package demo

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/coder/websocket"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/wsauth/wsauth"
)

const (
	reset  = "\x1b[0m"
	dim    = "\x1b[2m"
	bold   = "\x1b[1m"
	green  = "\x1b[32m"
	red    = "\x1b[31m"
	yellow = "\x1b[33m"
	cyan   = "\x1b[36m"
)

func (d *tour) paint(code, s string) string {
	if !d.color {
		return s
	}
	return code + s + reset
}

func (d *tour) line(s string) {
	d.outMu.Lock()
	defer d.outMu.Unlock()
	fmt.Fprintln(d.w, s)
}

// entry is one line of a step's timeline, stamped when it happened.
type entry struct {
	at   time.Time
	text string
}

// note records a line of the current step's timeline. Client events
// arrive on the client's event goroutine and application lines on the
// step's, so lines are kept with their time and printed in order when the
// step ends (flush).
func (d *tour) note(at time.Time, text string) {
	d.outMu.Lock()
	defer d.outMu.Unlock()
	d.pending = append(d.pending, entry{at: at, text: text})
}

// flush prints the step's timeline in the order things happened.
func (d *tour) flush() {
	d.outMu.Lock()
	defer d.outMu.Unlock()
	slices.SortStableFunc(d.pending, func(a, b entry) int { return a.at.Compare(b.at) })
	for _, e := range d.pending {
		fmt.Fprintf(d.w, "%s  %s\n", d.paint(dim, fmt.Sprintf("%+8.3fs", e.at.Sub(d.start).Seconds())), e.text)
	}
	d.pending = d.pending[:0]
}

func (d *tour) heading(n int, title string) {
	d.line("")
	d.line(d.paint(bold, fmt.Sprintf("── %d. %s", n, title)))
}

func (d *tour) say(who, format string, args ...any) {
	d.sayAt(time.Now(), who, format, args...)
}

func (d *tour) sayAt(at time.Time, who, format string, args ...any) {
	d.note(at, fmt.Sprintf("%-7s %s", who, fmt.Sprintf(format, args...)))
}

func (d *tour) good(format string, args ...any) {
	d.note(time.Now(), d.paint(green, "✔ "+fmt.Sprintf(format, args...)))
}

func (d *tour) bad(format string, args ...any) {
	d.note(time.Now(), d.paint(red, "✘ "+fmt.Sprintf(format, args...)))
}

// event puts a client event on the timeline.
func (d *tour) event(e wsauth.Event) {
	var msg string
	switch e.Kind {
	case wsauth.EventConnecting:
		msg = fmt.Sprintf("connecting (attempt %d, credentials: %s)", e.Attempt, e.Reason)
	case wsauth.EventAuthenticating:
		msg = "upgraded, authenticating"
	case wsauth.EventConnected:
		// The expiry known at this point may be the token's; the server's
		// auth_ok can still shorten it, so the timeline shows it at refresh.
		msg = d.paint(cyan, "connected") + fmt.Sprintf(" (verdict: %s)", e.Verdict)
	case wsauth.EventRefreshed:
		msg = d.paint(cyan, "refreshed in place") + expiry(e.Expiry)
	case wsauth.EventRefreshFailed:
		msg = d.paint(yellow, "refresh failed: ") + e.Err.Error()
	case wsauth.EventRotated:
		msg = d.paint(cyan, "rotated to a new connection") + expiry(e.Expiry)
	case wsauth.EventReconnecting:
		cause := ""
		switch {
		case e.Code != 0:
			cause = fmt.Sprintf("close %d %q", int(e.Code), e.CloseReason)
		case e.HTTPStatus != 0:
			cause = fmt.Sprintf("HTTP %d", e.HTTPStatus)
		case e.Err != nil:
			cause = shorten(e.Err.Error())
		}
		msg = d.paint(yellow, fmt.Sprintf("reconnecting (%s) in %s", e.Action, e.Delay.Round(time.Millisecond))) + ": " + cause
	case wsauth.EventStopped:
		if e.Err == nil {
			msg = "closed"
		} else {
			msg = d.paint(yellow, "stopped: ") + shorten(e.Err.Error())
		}
	default:
		msg = e.String()
	}
	d.sayAt(e.Time, "client", "%s", msg)
}

func expiry(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return fmt.Sprintf(", session ends in %s", time.Until(t).Round(100*time.Millisecond))
}

// shorten keeps a long network error on one readable line.
func shorten(s string) string {
	if i := strings.LastIndex(s, ": "); i > 0 && len(s) > 90 {
		return "…" + s[i:]
	}
	return s
}

func clientCredentials(tokenURL, id, secret string) oauth2.TokenSource {
	cfg := &clientcredentials.Config{ClientID: id, ClientSecret: secret, TokenURL: tokenURL}
	return wsauth.TokenFunc(cfg.Token)
}

func readTicket(resp *http.Response) (string, error) {
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("ticket endpoint: %s", resp.Status)
	}
	var out struct {
		Ticket string `json:"ticket"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<16)).Decode(&out); err != nil || out.Ticket == "" {
		return "", errors.New("ticket endpoint: no ticket in the answer")
	}
	return out.Ticket, nil
}

func closeReason(err error) string {
	var ce websocket.CloseError
	if errors.As(err, &ce) {
		return ce.Reason
	}
	return ""
}
