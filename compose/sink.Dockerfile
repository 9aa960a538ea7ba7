# The jobchaos SMTP sink as a container: records every message to /artifacts/smtp-messages.jsonl.
FROM python:3.11-slim
WORKDIR /src
COPY . /src
RUN pip install --no-cache-dir .
EXPOSE 1025
CMD ["python", "-m", "harness.services.smtp_server", "--host", "0.0.0.0", "--port", "1025", "--jsonl", "/artifacts/smtp-messages.jsonl"]
