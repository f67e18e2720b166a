"""SMTP submission: any application that can send mail submits through the API's own path (see server.py)."""
