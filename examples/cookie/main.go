// Command cookie connects with a session cookie, the pattern browsers
// already use: it logs in at the login endpoint, the cookie jar keeps the
// session cookie, and the cookie rides the WebSocket handshake. The server
// must check Origin on such sockets (or any web page could open one with
// the user's cookie), so the client sends an Origin the server allows. The
// client logs in again whenever the server refuses or ends the session. It
// sends one message and prints the answer.
//
//	go run ./examples/cookie     # against the reference server, in-process
//	WSAUTH_PASSWORD=… go run ./examples/cookie -url wss://app.example.com/ws \
//		-login-url https://app.example.com/api/login -username alice -origin https://app.example.com
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"log"
	"os"

	"github.com/wsauth/wsauth"
	"github.com/wsauth/wsauth/internal/exampleserver"
)

func main() {
	wsURL := flag.String("url", "", "WebSocket URL of the service; empty runs the reference server in-process")
	loginURL := flag.String("login-url", "", "login endpoint (POST, JSON body with username and password)")
	username := flag.String("username", "", "user to log in as")
	password := flag.String("password", os.Getenv("WSAUTH_PASSWORD"), "password (default $WSAUTH_PASSWORD)")
	origin := flag.String("origin", "", "Origin header the server allows")
	message := flag.String("message", "hello", "text message to send")
	flag.Parse()
	exampleserver.Main("cookie", func(ctx context.Context) error {
		if *wsURL == "" {
			local, err := exampleserver.Local()
			if err != nil {
				return err
			}
			defer local.Close()
			*wsURL, *loginURL = local.WSURL(), local.HTTPURL()+"/api/login"
			*username, *password, *origin = exampleserver.User, exampleserver.Password, exampleserver.Origin
		}
		return run(ctx, *wsURL, *loginURL, *username, *password, *origin, *message)
	})
}

func run(ctx context.Context, wsURL, loginURL, username, password, origin, message string) error {
	if loginURL == "" || username == "" || password == "" {
		return errors.New("-url needs -login-url, -username and -password (or $WSAUTH_PASSWORD)")
	}
	body, err := json.Marshal(map[string]string{"username": username, "password": password})
	if err != nil {
		return err
	}
	c, err := wsauth.Dial(ctx, wsURL, &wsauth.Options{
		Auth: &wsauth.CookieAuth{
			LoginURL:  loginURL,
			LoginBody: body, // its string values are kept out of errors and logs
			Origin:    origin,
		},
		OnEvent: func(e wsauth.Event) { log.Println("event:", e) },
	})
	if err != nil {
		return err
	}
	defer c.Close()

	return exampleserver.Echo(ctx, c, message)
}
