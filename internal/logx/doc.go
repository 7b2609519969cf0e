// Package logx holds small helpers for log/slog shared by servers and clients.
package logx
