package main

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/wsauth/wsauth"
	"github.com/wsauth/wsauth/dialect/centrifugo"
	"github.com/wsauth/wsauth/dialect/graphqlws"
	"github.com/wsauth/wsauth/dialect/homeassistant"
	"github.com/wsauth/wsauth/dialect/slack"
)

func TestDialectsByName(t *testing.T) {
	want := map[string]wsauth.Dialect{
		"wsauth":        wsauth.DefaultDialect,
		"plain":         wsauth.PlainDialect,
		"homeassistant": homeassistant.Dialect{},
		"graphql-ws":    graphqlws.Dialect{},
		"centrifugo":    &centrifugo.Dialect{},
		"slack":         slack.Dialect{},
	}
	require.Len(t, dialects, len(want))
	require.Equal(t, "centrifugo, graphql-ws, homeassistant, plain, slack, wsauth", dialectNames())
	for name, d := range want {
		got, ok := dialectNamed(name)
		require.True(t, ok, name)
		require.IsType(t, d, got)
	}
	a, _ := dialectNamed("centrifugo")
	b, _ := dialectNamed("centrifugo")
	require.NotSame(t, a, b, "a dialect with state is made anew for every client")
	_, ok := dialectNamed("nope")
	require.False(t, ok)
}
