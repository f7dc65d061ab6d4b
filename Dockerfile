# The Nodal image: API and worker are the same image with a different command.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY nodal ./nodal
COPY launcher ./launcher
COPY models ./models
COPY workflows ./workflows
COPY activities ./activities
COPY api ./api
COPY routing ./routing
COPY promise ./promise
COPY adapters ./adapters
COPY inventory ./inventory
COPY events ./events
RUN pip install --no-cache-dir .
USER nobody
EXPOSE 8000
CMD ["nodal", "api", "--host", "0.0.0.0", "--port", "8000"]
