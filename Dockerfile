# WIM-Z relay image: daphne serving wimz.asgi with the project's flags (wimz/serve.py).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app

COPY requirements.txt .
RUN pip install --no-cache-dir --require-hashes -r requirements.txt

COPY . .
RUN useradd --system --uid 1000 wimz && chown -R wimz /app
USER wimz

EXPOSE 8000
# Migrations run in their own one-off container (see docker-compose.yml `migrate`).
CMD ["python", "-m", "wimz.serve", "--host", "0.0.0.0", "--port", "8000"]
