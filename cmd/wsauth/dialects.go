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

// dialects are the dialects --dialect knows, by name. Each call makes a
// fresh value: a dialect may keep state (Centrifugo numbers its commands).
var dialects = map[string]func() wsauth.Dialect{
	"wsauth":        func() wsauth.Dialect { return wsauth.DefaultDialect },
	"plain":         func() wsauth.Dialect { return wsauth.PlainDialect },
	"homeassistant": func() wsauth.Dialect { return homeassistant.Dialect{} },
	"graphql-ws":    func() wsauth.Dialect { return graphqlws.Dialect{} },
	"centrifugo":    func() wsauth.Dialect { return &centrifugo.Dialect{} },
	"slack":         func() wsauth.Dialect { return slack.Dialect{} },
}

// defaultDialect is the name of wsauth.DefaultDialect.
const defaultDialect = "wsauth"

// dialectNamed returns the dialect called name.
func dialectNamed(name string) (wsauth.Dialect, bool) {
	mk, ok := dialects[name]
	if !ok {
		return nil, false
	}
	return mk(), true
}

// dialectNames lists the names --dialect accepts, sorted.
func dialectNames() string {
	names := make([]string, 0, len(dialects))
	for n := range dialects {
		names = append(names, n)
	}
	slices.Sort(names)
	return strings.Join(names, ", ")
}
