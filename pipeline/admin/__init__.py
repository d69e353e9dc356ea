"""The admin dashboard: server-rendered pages (Jinja2), a little JavaScript, no build step, no CDN."""
