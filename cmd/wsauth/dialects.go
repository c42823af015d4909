package main

import (
	"slices"
	"strings"

	"github.com/wsauth/wsauth"
	"github.com/wsauth/wsauth/dialect/centrifugo"
	"github.com/wsauth/wsauth/dialect/graphqlws"
	"github.com/wsauth/wsauth/dialect/homeassistant"
	"github.com/wsauth/wsauth/dialect/slack"
)

// dialectEntry is one dialect --dialect knows.
type dialectEntry struct {
	// make makes a fresh value: a dialect may keep state (Centrifugo
	// numbers its commands).
	make func() wsauth.Dialect
	// authMessage says the protocol has an in-band auth message, which
	// --auth first-message needs: without one the token is never sent
	// (PlainDialect fails such an attempt; slack.Dialect ignores the token,
	// since Slack authenticates by the single-use URL).
	authMessage bool
}

// dialects are the dialects --dialect knows, by name.
var dialects = map[string]dialectEntry{
	"wsauth":        {func() wsauth.Dialect { return wsauth.DefaultDialect }, true},
	"plain":         {func() wsauth.Dialect { return wsauth.PlainDialect }, false},
	"homeassistant": {func() wsauth.Dialect { return homeassistant.Dialect{} }, true},
	"graphql-ws":    {func() wsauth.Dialect { return graphqlws.Dialect{} }, true},
	"centrifugo":    {func() wsauth.Dialect { return &centrifugo.Dialect{} }, true},
	"slack":         {func() wsauth.Dialect { return slack.Dialect{} }, false},
}

// defaultDialect is the name of wsauth.DefaultDialect.
const defaultDialect = "wsauth"

// dialectNamed returns the dialect called name.
func dialectNamed(name string) (wsauth.Dialect, bool) {
	e, ok := dialects[name]
	if !ok {
		return nil, false
	}
	return e.make(), true
}

// dialectNames lists the names --dialect accepts, sorted.
func dialectNames() string { return namesOf(func(dialectEntry) bool { return true }) }

// authMessageDialects lists, sorted, the names of the dialects that have
// an auth message.
func authMessageDialects() string {
	return namesOf(func(e dialectEntry) bool { return e.authMessage })
}

func namesOf(keep func(dialectEntry) bool) string {
	names := make([]string, 0, len(dialects))
	for n, e := range dialects {
		if keep(e) {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	return strings.Join(names, ", ")
}
