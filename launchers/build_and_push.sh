#!/usr/bin/env bash
# Build the training image, tag it with the git commit, push it to Artifact Registry, print its URI
# (the value of hydra.launcher.image_uri). Needs gcloud and docker.
#   PROJECT=my-project launchers/build_and_push.sh
#   optional: REGION (us-central1), REPOSITORY (flavorfusion), TAG (commit, -dirty with local changes),
#             EXTRAS (gcp,vertex), BASE_IMAGE (the Dockerfile's default)
set -euo pipefail
cd "$(dirname "$0")/.."

PROJECT="${PROJECT:-$(gcloud config get-value project 2>/dev/null)}"
: "${PROJECT:?set PROJECT or run: gcloud config set project <id>}"
REGION="${REGION:-us-central1}"
REPOSITORY="${REPOSITORY:-flavorfusion}"
TAG="${TAG:-$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- || echo -dirty)}"
IMAGE="${REGION}-docker.pkg.dev/${PROJECT}/${REPOSITORY}/train:${TAG}"
BUILD_ARGS=(--build-arg "EXTRAS=${EXTRAS:-gcp,vertex}")
if [[ -n "${BASE_IMAGE:-}" ]]; then BUILD_ARGS+=(--build-arg "BASE_IMAGE=${BASE_IMAGE}"); fi

# first time only: the Docker repository, and docker's credentials for its registry
if ! gcloud artifacts repositories describe "$REPOSITORY" --project="$PROJECT" --location="$REGION" >/dev/null 2>&1; then
  gcloud artifacts repositories create "$REPOSITORY" --project="$PROJECT" --location="$REGION" \
    --repository-format=docker --description="FlavorFusion training images"
fi
gcloud auth configure-docker "${REGION}-docker.pkg.dev" --quiet

# Vertex AI machines are x86-64: say so, or an ARM laptop builds an image they cannot run
docker build --platform linux/amd64 -f launchers/Dockerfile "${BUILD_ARGS[@]}" -t "$IMAGE" .
docker push "$IMAGE"
echo "$IMAGE"
